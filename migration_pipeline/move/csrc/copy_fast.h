/* The compiled COPY fast paths (see module.c): what each file gives the module. */
#ifndef COPY_FAST_H
#define COPY_FAST_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyObject *timestamp_texts(PyObject *self, PyObject *values); /* time.c */
int json_certain_text(PyObject *text); /* json.c: 1 when convert.py keeps the JSON text as it is */
PyObject *copy_lines(PyObject *self, PyObject *args); /* lines.c */
PyObject *copy_binary(PyObject *self, PyObject *args); /* binary.c */
PyObject *select_open(PyObject *self, PyObject *args); /* read.c */
PyObject *select_columns(PyObject *self, PyObject *args); /* read.c */

/* lines.c: a str in UTF-8 at ``to`` (with ``unescape``, a COPY text's escapes undone): the end of what it
 * wrote, NULL with UnicodeEncodeError for a surrogate, ValueError for an escape COPY text never holds; the
 * most bytes that takes */
char *utf8(PyObject *text, char *to, int unescape);
Py_ssize_t utf8_bound(PyObject *text);

/* lines.c: how a row of a batch's columns (``items[c][r]``, ``types[c]`` its letter where there are types)
 * is written: the most bytes it takes (-1 on error), its bytes at ``to`` (the end, NULL on error), and the
 * bytes of it not counted in the longest (a line's newline) */
typedef struct {
    Py_ssize_t (*bound)(PyObject ***items, Py_ssize_t ncols, Py_ssize_t r, const char *types);
    char *(*write)(PyObject ***items, Py_ssize_t ncols, Py_ssize_t r, const char *types, char *to);
    Py_ssize_t uncounted;
} RowWriter;

/* lines.c: the rows of ``columns`` (lists of the same length) but the indexes in ``skip`` (a set or None),
 * written one after another by ``rows``: (their bytes, the longest's); NULL on error */
PyObject *batch_bytes(PyObject *columns, const char *types, PyObject *skip, const RowWriter *rows);

/* time.c: two and four digits (-1 for other characters, or two outside lo-hi), whether a date exists (years
 * 1-9999, as datetime.date takes them), the days from 1970-01-01 to a date */
int two_digits(const Py_UCS1 *p, int lo, int hi);
int four_digits(const Py_UCS1 *p);
int date_exists(int year, int month, int day);
long long days_from_civil(long long y, int m, int d);

#endif
