/* copy_binary (copy_write.tuples): a batch's rows as the tuples of a binary COPY, written from the COPY text
 * fields copy_text.py makes of them. The value rules stay what they are (they make the text); the server
 * then parses none of it: no field splitting, no timestamp, integer or boolean reading (1M tweets: the
 * COPY 4.0 s in text, 2.9 s in binary; bench/migrate_bench.py --profile).
 *
 * In:  columns as copy_lines takes them (the rowids as int, then each column's fields: its COPY text, "\N"
 *      for NULL; anything in a skipped row), types (one letter a column: q int8 from an int; t text or
 *      varchar, j jsonb, T timestamptz, b boolean, i int4 from a field), skip (row indexes, or None).
 * Out: (the tuples of the rows but skip's, without the COPY's header and trailer; the bytes of the longest).
 *      A timestamptz is microseconds since 2000-01-01 UTC of the texts copy_time.py and convert.py write:
 *      YYYY-MM-DD, a space or T, HH:MM:SS, up to 6 fraction digits, then Z, +00 or +00:00.
 * Fails: ValueError for a field that is not its type's COPY text in those shapes (copy_text.py then finds
 *      its row); UnicodeEncodeError for a text UTF-8 cannot encode (as str.encode); TypeError for
 *      arguments of another shape.
 *
 * test_copy_fast.py loads batches both ways, text and binary, into PostgreSQL and compares what landed. */
#include "copy_fast.h"
#include <stdint.h>

#define POSTGRES_EPOCH_DAYS 10957 /* from 1970-01-01 to 2000-01-01 */

static char *be16(char *to, unsigned v)
{
    to[0] = (char)(v >> 8);
    to[1] = (char)v;
    return to + 2;
}

static char *be32(char *to, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        to[i] = (char)v;
    return to + 4;
}

static char *be64(char *to, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        to[i] = (char)v;
    return to + 8;
}

static int not_a_field(PyObject *field, char type)
{
    PyErr_Format(PyExc_ValueError, "not the COPY text of a %c field: %.80R", type, field);
    return -1;
}

/* 1 for the NULL field "\N", 0 for another str, -1 (TypeError) for what is not a str */
static int null_field(PyObject *field)
{
    if (!PyUnicode_CheckExact(field)) {
        PyErr_Format(PyExc_TypeError, "a COPY field is a str, not %.50s", Py_TYPE(field)->tp_name);
        return -1;
    }
    return PyUnicode_GET_LENGTH(field) == 2 && PyUnicode_READ_CHAR(field, 0) == '\\' &&
           PyUnicode_READ_CHAR(field, 1) == 'N';
}

/* µs since 2000-01-01 00:00 UTC of a timestamp text in the shapes above; -1 for another text */
static int timestamp_us(PyObject *text, int64_t *out)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), i = 19;
    if (!PyUnicode_IS_ASCII(text) || n < 20)
        return -1;
    const Py_UCS1 *p = PyUnicode_1BYTE_DATA(text);
    int year = four_digits(p), month = two_digits(p + 5, 1, 12), day = two_digits(p + 8, 1, 31);
    int hour = two_digits(p + 11, 0, 23), minute = two_digits(p + 14, 0, 59), second = two_digits(p + 17, 0, 59);
    if (year < 1 || p[4] != '-' || month < 0 || p[7] != '-' || day < 0 || !date_exists(year, month, day) ||
        (p[10] != ' ' && p[10] != 'T') || hour < 0 || p[13] != ':' || minute < 0 || p[16] != ':' || second < 0)
        return -1;
    int64_t micros = 0;
    if (p[i] == '.') {
        int digits = 0;
        for (i++; i < n && digits < 6 && p[i] >= '0' && p[i] <= '9'; i++, digits++)
            micros = micros * 10 + (p[i] - '0');
        if (digits == 0)
            return -1;
        for (; digits < 6; digits++)
            micros *= 10;
    }
    const char *zone = (const char *)p + i;
    Py_ssize_t rest = n - i;
    if (!((rest == 1 && zone[0] == 'Z') || (rest == 3 && memcmp(zone, "+00", 3) == 0) ||
          (rest == 6 && memcmp(zone, "+00:00", 6) == 0)))
        return -1;
    int64_t days = days_from_civil(year, month, day) - POSTGRES_EPOCH_DAYS;
    *out = (days * 86400 + hour * 3600 + minute * 60 + second) * 1000000 + micros;
    return 0;
}

/* an int4 field's digits; -1 for another text */
static int int4_field(PyObject *text, int32_t *out)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), i = 0;
    if (!PyUnicode_IS_ASCII(text) || n == 0 || n > 11)
        return -1;
    const Py_UCS1 *p = PyUnicode_1BYTE_DATA(text);
    int negative = p[0] == '-';
    i = negative;
    if (i == n)
        return -1;
    int64_t v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    v = negative ? -v : v;
    if (v < INT32_MIN || v > INT32_MAX)
        return -1;
    *out = (int32_t)v;
    return 0;
}

static char *surrogate(PyObject *text)
{
    Py_ssize_t ignored;
    PyUnicode_AsUTF8AndSize(text, &ignored); /* raises what str.encode would */
    return NULL;
}

/* a COPY text field's text, its escapes undone, in UTF-8 at ``to``: the end of what it wrote, NULL on error */
#define UNESCAPE(CH)                                                                                          \
    do {                                                                                                      \
        const CH *p = (const CH *)PyUnicode_DATA(text);                                                       \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                  \
            Py_UCS4 c = p[i];                                                                                 \
            if (c == '\\') {                                                                                  \
                c = ++i < n ? p[i] : 0;                                                                       \
                c = c == '\\' ? '\\' : c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : 0;               \
                if (c == 0)                                                                                   \
                    return not_a_field(text, 't'), NULL;                                                      \
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

static char *unescaped(PyObject *text, char *to)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (PyUnicode_IS_ASCII(text) && memchr(PyUnicode_DATA(text), '\\', n) == NULL) {
        memcpy(to, PyUnicode_DATA(text), n);
        return to + n;
    }
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND:
        UNESCAPE(Py_UCS1);
        break;
    case PyUnicode_2BYTE_KIND:
        UNESCAPE(Py_UCS2);
        break;
    default:
        UNESCAPE(Py_UCS4);
    }
    return to;
}

/* the most bytes a field of ``type`` takes, its length word included; -1 on error */
static Py_ssize_t field_bound(PyObject *field, char type)
{
    if (type == 'q')
        return 12;
    int null = null_field(field);
    if (null != 0)
        return null < 0 ? -1 : 4;
    Py_ssize_t n = PyUnicode_GET_LENGTH(field);
    int kind = PyUnicode_KIND(field);
    switch (type) {
    case 't':
    case 'j':
        if (PyUnicode_IS_ASCII(field))
            return 5 + n;
        return 5 + n * (kind == PyUnicode_1BYTE_KIND ? 2 : kind == PyUnicode_2BYTE_KIND ? 3 : 4);
    case 'T':
        return 12;
    case 'b':
        return 5;
    case 'i':
        return 8;
    }
    PyErr_Format(PyExc_ValueError, "no binary COPY type %c", type);
    return -1;
}

/* a field of ``type`` at ``to``, its length word first: the end of what it wrote, NULL on error */
static char *write_field(PyObject *field, char type, char *to)
{
    if (type == 'q') {
        long long v = PyLong_AsLongLong(field);
        if (v == -1 && PyErr_Occurred())
            return NULL;
        return be64(be32(to, 8), (uint64_t)v);
    }
    int null = null_field(field);
    if (null != 0)
        return null < 0 ? NULL : be32(to, 0xFFFFFFFFu); /* -1: NULL */
    int64_t micros;
    int32_t number;
    char *start = to + 4, *end;
    switch (type) {
    case 'j':
        *start = 1; /* jsonb's binary format: its version, then the text */
        end = unescaped(field, start + 1);
        break;
    case 't':
        end = unescaped(field, start);
        break;
    case 'T':
        if (timestamp_us(field, &micros) < 0)
            return not_a_field(field, type), NULL;
        return be64(be32(to, 8), (uint64_t)micros);
    case 'b': {
        Py_UCS4 c = PyUnicode_GET_LENGTH(field) == 1 ? PyUnicode_READ_CHAR(field, 0) : 0;
        if (c != 't' && c != 'f')
            return not_a_field(field, type), NULL;
        *start = c == 't';
        return be32(to, 1) + 1;
    }
    default: /* 'i' */
        if (int4_field(field, &number) < 0)
            return not_a_field(field, type), NULL;
        return be32(be32(to, 4), (uint32_t)number);
    }
    if (end != NULL)
        be32(to, (uint32_t)(end - start));
    return end;
}

/* the tuples' bytes from ``to`` on, and their size (the longest's in ``*longest``); with ``to`` NULL, the
 * most they can take; -1 on error */
static Py_ssize_t write_tuples(PyObject *columns, const char *types, Py_ssize_t nrows, PyObject *skip, char *to,
                               Py_ssize_t *longest)
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
        if (skip_row) {
            total = skip_row < 0 ? -1 : total;
            continue;
        }
        Py_ssize_t start = total;
        if (to == NULL) {
            total += 2;
            for (Py_ssize_t c = 0; c < ncols && total >= 0; c++) {
                Py_ssize_t most = field_bound(items[c][r], types[c]);
                total = most < 0 ? -1 : total + most;
            }
            continue;
        }
        char *end = be16(to + total, (unsigned)ncols);
        for (Py_ssize_t c = 0; c < ncols && end != NULL; c++)
            end = write_field(items[c][r], types[c], end);
        total = end == NULL ? -1 : end - to;
        if (total - start > *longest)
            *longest = total - start;
    }
    PyMem_Free(items);
    return total;
}

PyObject *copy_binary(PyObject *self, PyObject *args)
{
    PyObject *columns, *skip;
    const char *types;
    Py_ssize_t ntypes;
    if (!PyArg_ParseTuple(args, "O!s#O", &PyList_Type, &columns, &types, &ntypes, &skip))
        return NULL;
    if (skip != Py_None && !PyAnySet_Check(skip)) {
        PyErr_SetString(PyExc_TypeError, "skip is a set or None");
        return NULL;
    }
    Py_ssize_t ncols = PyList_GET_SIZE(columns), nrows = -1;
    if (ncols != ntypes || ncols > 1600) {
        PyErr_SetString(PyExc_TypeError, "a type for each column (at most 1,600)");
        return NULL;
    }
    for (Py_ssize_t c = 0; c < ncols; c++) {
        PyObject *column = PyList_GET_ITEM(columns, c);
        if (!PyList_CheckExact(column) || (nrows >= 0 && PyList_GET_SIZE(column) != nrows)) {
            PyErr_SetString(PyExc_TypeError, "the columns are lists of the same length");
            return NULL;
        }
        nrows = PyList_GET_SIZE(column);
    }
    Py_ssize_t longest = 0, most = nrows > 0 ? write_tuples(columns, types, nrows, skip, NULL, &longest) : 0;
    if (most < 0)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, most);
    if (out == NULL)
        return NULL;
    if (most > 0) {
        Py_ssize_t size = write_tuples(columns, types, nrows, skip, PyBytes_AS_STRING(out), &longest);
        if (size < 0) {
            Py_DECREF(out);
            return NULL;
        }
        if (_PyBytes_Resize(&out, size) < 0) /* on failure, _PyBytes_Resize frees it */
            return NULL;
    }
    return Py_BuildValue("(Nn)", out, longest);
}
