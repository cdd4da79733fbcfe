/* The compiled COPY fast paths (see module.c): what each file gives the module. */
#ifndef COPY_FAST_H
#define COPY_FAST_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyObject *timestamp_texts(PyObject *self, PyObject *values); /* time.c */
int json_certain_text(PyObject *text); /* json.c: 1 when convert.py keeps the JSON text as it is */
PyObject *copy_binary(PyObject *self, PyObject *args); /* binary.c */
PyObject *select_open(PyObject *self, PyObject *args); /* read.c */
PyObject *select_columns(PyObject *self, PyObject *args); /* read.c */
int row_skipped(PyObject *skip, Py_ssize_t r); /* module.c: -1 on error, else whether row r is in skip */

/* time.c: two and four digits (-1 for other characters, or two outside lo-hi), whether a date exists (years
 * 1-9999, as datetime.date takes them), the days from 1970-01-01 to a date */
int two_digits(const Py_UCS1 *p, int lo, int hi);
int four_digits(const Py_UCS1 *p);
int date_exists(int year, int month, int day);
long long days_from_civil(long long y, int m, int d);

#endif
