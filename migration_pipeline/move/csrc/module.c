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
 *      copy_lines(columns, skip) -> (the rows as text COPY lines in UTF-8, but the row indexes in ``skip``;
 *      the bytes of the longest of those lines, without its newline);
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

/* ---- COPY lines -------------------------------------------------------------------------------- */

/* UTF-8 of ``n`` characters of one width at ``to``; NULL (with UnicodeEncodeError) for a surrogate */
#define ENCODE(CH)                                                                                            \
    do {                                                                                                      \
        const CH *p = (const CH *)PyUnicode_DATA(text);                                                       \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                  \
            Py_UCS4 c = p[i];                                                                                 \
            if (c < 0x80)                                                                                     \
                *to++ = (char)c;                                                                              \
            else if (c < 0x800) {                                                                             \
                *to++ = (char)(0xC0 | (c >> 6));                                                              \
                *to++ = (char)(0x80 | (c & 0x3F));                                                            \
            } else if (c < 0x10000) {                                                                         \
                if (c >= 0xD800 && c <= 0xDFFF)                                                               \
                    return surrogate(text);                                                                   \
                *to++ = (char)(0xE0 | (c >> 12));                                                             \
                *to++ = (char)(0x80 | ((c >> 6) & 0x3F));                                                     \
                *to++ = (char)(0x80 | (c & 0x3F));                                                            \
            } else {                                                                                          \
                *to++ = (char)(0xF0 | (c >> 18));                                                             \
                *to++ = (char)(0x80 | ((c >> 12) & 0x3F));                                                    \
                *to++ = (char)(0x80 | ((c >> 6) & 0x3F));                                                     \
                *to++ = (char)(0x80 | (c & 0x3F));                                                            \
            }                                                                                                 \
        }                                                                                                     \
    } while (0)

static char *surrogate(PyObject *text)
{
    Py_ssize_t ignored;
    PyUnicode_AsUTF8AndSize(text, &ignored); /* raises what str.encode would */
    return NULL;
}

static char *utf8(PyObject *text, char *to)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (PyUnicode_IS_ASCII(text)) {
        memcpy(to, PyUnicode_DATA(text), n);
        return to + n;
    }
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND:
        ENCODE(Py_UCS1);
        break;
    case PyUnicode_2BYTE_KIND:
        ENCODE(Py_UCS2);
        break;
    default:
        ENCODE(Py_UCS4);
    }
    return to;
}

/* the most bytes a field (a str, or an int) takes in UTF-8 (a character of a 1-byte kind 2, of a 2-byte kind
 * 3, of a 4-byte kind 4); -1 (with TypeError) for another value */
static Py_ssize_t field_bound(PyObject *value)
{
    if (PyUnicode_CheckExact(value)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(value);
        int kind = PyUnicode_KIND(value);
        if (PyUnicode_IS_ASCII(value))
            return n;
        return n * (kind == PyUnicode_1BYTE_KIND ? 2 : kind == PyUnicode_2BYTE_KIND ? 3 : 4);
    }
    if (PyLong_CheckExact(value))
        return 20;
    PyErr_Format(PyExc_TypeError, "a COPY field is a str or an int, not %.50s", Py_TYPE(value)->tp_name);
    return -1;
}

/* a field in UTF-8 (a str's, an int's digits) at ``to``: the end of what it wrote, NULL on error */
static char *field(PyObject *value, char *to)
{
    if (PyUnicode_CheckExact(value))
        return utf8(value, to);
    long long v = PyLong_AsLongLong(value);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    char digits[20], *d = digits + sizeof digits;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do
        *--d = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--d = '-';
    memcpy(to, d, digits + sizeof digits - d);
    return to + (digits + sizeof digits - d);
}

/* -1 on error, else whether row ``r`` is in ``skip`` */
int row_skipped(PyObject *skip, Py_ssize_t r)
{
    if (skip == Py_None)
        return 0;
    PyObject *key = PyLong_FromSsize_t(r);
    if (key == NULL)
        return -1;
    int found = PySet_Contains(skip, key);
    Py_DECREF(key);
    return found;
}

/* the lines' bytes from ``to`` on, and their size (the longest line's in ``*longest``); with ``to`` NULL,
 * the most they can take; -1 on error */
static Py_ssize_t write_lines(PyObject *columns, Py_ssize_t nrows, PyObject *skip, char *to, Py_ssize_t *longest)
{
    Py_ssize_t ncols = PyList_GET_SIZE(columns), total = 0;
    PyObject ***items = PyMem_Malloc(ncols * sizeof *items);
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t c = 0; c < ncols; c++)
        items[c] = PySequence_Fast_ITEMS(PyList_GET_ITEM(columns, c));
    for (Py_ssize_t r = 0; r < nrows && total >= 0; r++) {
        int skip_row = row_skipped(skip, r);
        if (skip_row)
            total = skip_row < 0 ? -1 : total;
        else if (to == NULL)
            for (Py_ssize_t c = 0; c < ncols && total >= 0; c++) {
                Py_ssize_t most = field_bound(items[c][r]);
                total = most < 0 ? -1 : total + most + 1;
            }
        else {
            Py_ssize_t start = total;
            for (Py_ssize_t c = 0; c < ncols && total >= 0; c++) {
                char *end = field(items[c][r], to + total);
                if (end == NULL)
                    total = -1;
                else {
                    total = end - to;
                    to[total++] = c + 1 < ncols ? '\t' : '\n';
                }
            }
            if (total >= 0 && total - 1 - start > *longest)
                *longest = total - 1 - start;
        }
    }
    PyMem_Free(items);
    return total;
}

static PyObject *copy_lines(PyObject *self, PyObject *args)
{
    PyObject *columns, *skip;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &columns, &skip))
        return NULL;
    if (skip != Py_None && !PyAnySet_Check(skip)) {
        PyErr_SetString(PyExc_TypeError, "skip is a set or None");
        return NULL;
    }
    Py_ssize_t nrows = -1;
    for (Py_ssize_t c = 0; c < PyList_GET_SIZE(columns); c++) {
        PyObject *column = PyList_GET_ITEM(columns, c);
        if (!PyList_CheckExact(column) || (nrows >= 0 && PyList_GET_SIZE(column) != nrows)) {
            PyErr_SetString(PyExc_TypeError, "the columns are lists of the same length");
            return NULL;
        }
        nrows = PyList_GET_SIZE(column);
    }
    Py_ssize_t longest = 0, most = nrows > 0 ? write_lines(columns, nrows, skip, NULL, &longest) : 0;
    if (most < 0)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, most);
    if (out == NULL)
        return NULL;
    if (most > 0) {
        Py_ssize_t size = write_lines(columns, nrows, skip, PyBytes_AS_STRING(out), &longest);
        if (size < 0) {
            Py_DECREF(out);
            return NULL;
        }
        if (_PyBytes_Resize(&out, size) < 0) /* on failure, _PyBytes_Resize frees it */
            return NULL;
    }
    return Py_BuildValue("(Nn)", out, longest);
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
