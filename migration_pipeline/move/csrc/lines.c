/* copy_lines: a batch's rows as the lines of a text COPY in UTF-8; and what binary.c's tuples share with them:
 * a text in UTF-8 (its COPY escapes undone for binary), and a batch's rows sized, then written into one bytes
 * object, but the rows skipped, with the longest row's size (copy_fast.h says what each gives). */
#include "copy_fast.h"

static char *surrogate(PyObject *text)
{
    Py_ssize_t ignored;
    PyUnicode_AsUTF8AndSize(text, &ignored); /* raises what str.encode would */
    return NULL;
}

static char *bad_escape(PyObject *text)
{
    PyErr_Format(PyExc_ValueError, "not the COPY text of a t field: %.80R", text);
    return NULL;
}

/* UTF-8 of ``n`` characters of one width at ``to`` (with ``unescape``, a COPY text's escapes undone) */
#define ENCODE(CH)                                                                                            \
    do {                                                                                                      \
        const CH *p = (const CH *)PyUnicode_DATA(text);                                                       \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                  \
            Py_UCS4 c = p[i];                                                                                 \
            if (unescape && c == '\\') {                                                                      \
                c = ++i < n ? p[i] : 0;                                                                       \
                c = c == '\\' ? '\\' : c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : 0;               \
                if (c == 0)                                                                                   \
                    return bad_escape(text);                                                                  \
                *to++ = (char)c;                                                                              \
            } else if (c < 0x80)                                                                              \
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

char *utf8(PyObject *text, char *to, int unescape)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (PyUnicode_IS_ASCII(text) && !(unescape && memchr(PyUnicode_DATA(text), '\\', n))) {
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

Py_ssize_t utf8_bound(PyObject *text)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    if (PyUnicode_IS_ASCII(text))
        return n;
    return n * (kind == PyUnicode_1BYTE_KIND ? 2 : kind == PyUnicode_2BYTE_KIND ? 3 : 4);
}

/* -1 on error, else whether row ``r`` is in ``skip`` */
static int row_skipped(PyObject *skip, Py_ssize_t r)
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

/* each row's bytes, but skip's: ``to`` NULL, the most they take (a sum of row bounds), else written there and
 * the longest row's less ``uncounted`` in ``*longest``; -1 on error */
static Py_ssize_t write_rows(PyObject ***items, Py_ssize_t ncols, Py_ssize_t nrows, const char *types,
                             PyObject *skip, const RowWriter *rows, char *to, Py_ssize_t *longest)
{
    Py_ssize_t total = 0;
    for (Py_ssize_t r = 0; r < nrows && total >= 0; r++) {
        int skip_row = row_skipped(skip, r);
        if (skip_row) {
            total = skip_row < 0 ? -1 : total;
            continue;
        }
        if (to == NULL) {
            Py_ssize_t most = rows->bound(items, ncols, r, types);
            total = most < 0 ? -1 : total + most;
            continue;
        }
        char *end = rows->write(items, ncols, r, types, to + total);
        if (end == NULL)
            return -1;
        if (end - (to + total) - rows->uncounted > *longest)
            *longest = end - (to + total) - rows->uncounted;
        total = end - to;
    }
    return total;
}

PyObject *batch_bytes(PyObject *columns, const char *types, PyObject *skip, const RowWriter *rows)
{
    if (skip != Py_None && !PyAnySet_Check(skip)) {
        PyErr_SetString(PyExc_TypeError, "skip is a set or None");
        return NULL;
    }
    Py_ssize_t ncols = PyList_GET_SIZE(columns), nrows = 0;
    for (Py_ssize_t c = 0; c < ncols; c++) {
        PyObject *column = PyList_GET_ITEM(columns, c);
        if (!PyList_CheckExact(column) || (c > 0 && PyList_GET_SIZE(column) != nrows)) {
            PyErr_SetString(PyExc_TypeError, "the columns are lists of the same length");
            return NULL;
        }
        nrows = PyList_GET_SIZE(column);
    }
    PyObject ***items = PyMem_Malloc((ncols + 1) * sizeof *items);
    if (items == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t c = 0; c < ncols; c++)
        items[c] = PySequence_Fast_ITEMS(PyList_GET_ITEM(columns, c));
    Py_ssize_t longest = 0, most = write_rows(items, ncols, nrows, types, skip, rows, NULL, &longest);
    PyObject *out = most < 0 ? NULL : PyBytes_FromStringAndSize(NULL, most);
    if (out != NULL && most > 0) {
        Py_ssize_t size = write_rows(items, ncols, nrows, types, skip, rows, PyBytes_AS_STRING(out), &longest);
        if (size < 0)
            Py_CLEAR(out);
        else if (_PyBytes_Resize(&out, size) < 0) /* on failure, _PyBytes_Resize frees it */
            out = NULL;
    }
    PyMem_Free(items);
    return out == NULL ? NULL : Py_BuildValue("(Nn)", out, longest);
}

/* the most bytes a field (a str, or an int) takes in UTF-8; -1 (with TypeError) for another value */
static Py_ssize_t field_bound(PyObject *value)
{
    if (PyUnicode_CheckExact(value))
        return utf8_bound(value);
    if (PyLong_CheckExact(value))
        return 20;
    PyErr_Format(PyExc_TypeError, "a COPY field is a str or an int, not %.50s", Py_TYPE(value)->tp_name);
    return -1;
}

/* a field in UTF-8 (a str's, an int's digits) at ``to``: the end of what it wrote, NULL on error */
static char *field(PyObject *value, char *to)
{
    if (PyUnicode_CheckExact(value))
        return utf8(value, to, 0);
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

static Py_ssize_t line_bound(PyObject ***items, Py_ssize_t ncols, Py_ssize_t r, const char *types)
{
    Py_ssize_t total = 0;
    for (Py_ssize_t c = 0; c < ncols && total >= 0; c++) {
        Py_ssize_t most = field_bound(items[c][r]);
        total = most < 0 ? -1 : total + most + 1;
    }
    return total;
}

static char *line(PyObject ***items, Py_ssize_t ncols, Py_ssize_t r, const char *types, char *to)
{
    for (Py_ssize_t c = 0; c < ncols && to != NULL; c++) {
        to = field(items[c][r], to);
        if (to != NULL)
            *to++ = c + 1 < ncols ? '\t' : '\n';
    }
    return to;
}

static const RowWriter LINES = {line_bound, line, 1}; /* the longest line's bytes without its newline */

PyObject *copy_lines(PyObject *self, PyObject *args)
{
    PyObject *columns, *skip;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &columns, &skip))
        return NULL;
    return batch_bytes(columns, NULL, skip, &LINES);
}
