/* migration_pipeline.move._copy_fast: the fast paths of copy_text.py and copy_time.py, compiled, giving the
 * same answers without a Python object per value (a million tweets: the conversion 3.0 s of CPU -> 0.9 s).
 *
 * In:  the columns of a batch as copy_text.py holds them (lists of str; the rowids as int).
 * Out: timestamp_texts(values) (time.c) -> copy_time.timestamp_texts's answer: each value's COPY text
 *      where a fast path is sure of it, else None;
 *      texts_slow(values, nulls_allowed, max_length, json) -> (the indexes of the values of a text column
 *      to convert one by one, whether a text kept holds what a text COPY escapes, whether a NULL is kept):
 *      a text is kept as it is when it holds no NUL and has at most ``max_length`` characters (-1: any)
 *      and, for a JSON column, when json.c vouches that convert.py keeps it as it is; None is kept where
 *      ``nulls_allowed``; anything else is slow;
 *      missing(values) -> the indexes of the Nones;
 *      columns(rows, width) -> a batch's tuples of ``width`` values as ``width`` lists;
 *      copy_lines(columns, skip) (lines.c) -> (the rows as text COPY lines in UTF-8, but the row indexes
 *      in ``skip``; the bytes of the longest of those lines, without its newline);
 *      copy_binary(columns, types, skip) (binary.c) -> the same rows as binary COPY tuples;
 *      select_open(uri, select, params, decode), select_columns(reader, n) (read.c): a SQLite SELECT's
 *      rows a batch at a time as columns of the values the sqlite3 module would give.
 * Fails: TypeError for arguments of another shape; UnicodeEncodeError for a text UTF-8 cannot encode (as
 *      str.encode would).
 *
 * copy_text.py and copy_time.py stay the definition: they run where this did not build (native.py);
 * test_copy_fast.py compares each function with the Python it replaces, and test_copy_text.py stages
 * through PostgreSQL both ways. */
#include "copy_fast.h"

/* ---- the checks of a text column ---------------------------------------------------------------- */

/* 1 for NUL, 2 for what a text COPY escapes (backslash, tab, newline, carriage return) */
static const unsigned char FLAGS[256] = {[0] = 1, ['\\'] = 2, ['\t'] = 2, ['\n'] = 2, ['\r'] = 2};

/* FLAGS of one text's characters (stopping once it has found both) */
#define SCAN(CH, CHECK)                                                                                       \
    do {                                                                                                      \
        const CH *p = (const CH *)PyUnicode_DATA(text);                                                       \
        for (Py_ssize_t i = 0; i < n && flags != 3; i++)                                                      \
            if (CHECK)                                                                                        \
                flags |= FLAGS[p[i]];                                                                         \
    } while (0)

static int text_flags(PyObject *text)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int flags = 0;
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND:
        SCAN(Py_UCS1, 1);
        break;
    case PyUnicode_2BYTE_KIND:
        SCAN(Py_UCS2, p[i] < 256);
        break;
    default:
        SCAN(Py_UCS4, p[i] < 256);
    }
    return flags;
}

/* ``index`` appended to the list ``to``; -1 on error */
static int append_index(PyObject *to, Py_ssize_t index)
{
    PyObject *number = PyLong_FromSsize_t(index);
    int failed = number == NULL || PyList_Append(to, number) < 0;
    Py_XDECREF(number);
    return failed ? -1 : 0;
}

/* texts_slow(values, nulls_allowed, max_length, json) -> (slow, special, nulls) */
static PyObject *texts_slow(PyObject *self, PyObject *args)
{
    PyObject *values;
    int nulls_allowed, json, special = 0, nulls = 0;
    Py_ssize_t max_length;
    if (!PyArg_ParseTuple(args, "O!pnp", &PyList_Type, &values, &nulls_allowed, &max_length, &json))
        return NULL;
    PyObject *slow = PyList_New(0);
    for (Py_ssize_t i = 0; slow != NULL && i < PyList_GET_SIZE(values); i++) {
        PyObject *text = PyList_GET_ITEM(values, i);
        int kept, flags = 0;
        if (text == Py_None)
            nulls |= kept = nulls_allowed;
        else if (!PyUnicode_CheckExact(text) || (max_length >= 0 && PyUnicode_GET_LENGTH(text) > max_length))
            kept = 0;
        else
            kept = !((flags = text_flags(text)) & 1) && (!json || json_certain_text(text));
        if (kept)
            special |= flags & 2;
        else if (append_index(slow, i) < 0)
            Py_CLEAR(slow);
    }
    if (slow == NULL)
        return NULL;
    return Py_BuildValue("(NOO)", slow, special ? Py_True : Py_False, nulls ? Py_True : Py_False);
}

/* the indexes of the Nones of a list */
static PyObject *missing(PyObject *self, PyObject *values)
{
    if (!PyList_CheckExact(values)) {
        PyErr_SetString(PyExc_TypeError, "missing takes a list");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && i < PyList_GET_SIZE(values); i++)
        if (PyList_GET_ITEM(values, i) == Py_None && append_index(out, i) < 0)
            Py_CLEAR(out);
    return out;
}

/* ---- a batch's columns ---------------------------------------------------------------------------- */

static PyObject *columns(PyObject *self, PyObject *args)
{
    PyObject *rows;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &rows, &width))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    PyObject *out = PyList_New(width);
    for (Py_ssize_t c = 0; out != NULL && c < width; c++) {
        PyObject *column = PyList_New(n);
        if (column == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, c, column);
    }
    for (Py_ssize_t r = 0; out != NULL && r < n; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != width) {
            PyErr_Format(PyExc_TypeError, "row %zd is not a tuple of %zd values", r, width);
            Py_CLEAR(out);
            break;
        }
        for (Py_ssize_t c = 0; c < width; c++) {
            PyObject *value = PyTuple_GET_ITEM(row, c);
            Py_INCREF(value);
            PyList_SET_ITEM(PyList_GET_ITEM(out, c), r, value);
        }
    }
    return out;
}

static PyMethodDef methods[] = {
    {"timestamp_texts", timestamp_texts, METH_O, "Each value's COPY text where a fast path is sure of it."},
    {"texts_slow", texts_slow, METH_VARARGS, "texts_slow(values, nulls_allowed, max_length, json)."},
    {"missing", missing, METH_O, "The indexes of the Nones of a list."},
    {"columns", columns, METH_VARARGS, "columns(rows, width) -> the rows' values as ``width`` lists."},
    {"copy_lines", copy_lines, METH_VARARGS, "copy_lines(columns, skip) -> (the rows as text COPY lines, the longest's bytes)."},
    {"copy_binary", copy_binary, METH_VARARGS, "copy_binary(columns, types, skip) -> (binary COPY tuples, the longest's bytes)."},
    {"select_open", select_open, METH_VARARGS, "select_open(uri, select, params, decode) -> a reader (read.c)."},
    {"select_columns", select_columns, METH_VARARGS, "select_columns(reader, n) -> the next n rows' columns."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_copy_fast", NULL, -1, methods};

PyMODINIT_FUNC PyInit__copy_fast(void) { return PyModule_Create(&module); }
