/* The compiled COPY fast paths (see module.c): what each file gives the module. */
#ifndef COPY_FAST_H
#define COPY_FAST_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyObject *timestamp_texts(PyObject *self, PyObject *values); /* time.c */
int json_certain_text(PyObject *text); /* json.c: 1 when convert.py keeps the JSON text as it is */

#endif
