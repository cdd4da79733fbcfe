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

/* the most bytes a field of ``type`` takes, its length word included; -1 on error */
static Py_ssize_t field_bound(PyObject *field, char type)
{
    if (type == 'q')
        return 12;
    int null = null_field(field);
    if (null != 0)
        return null < 0 ? -1 : 4;
    switch (type) {
    case 't':
    case 'j':
        return 5 + utf8_bound(field);
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
        end = utf8(field, start + 1, 1);
        break;
    case 't':
        end = utf8(field, start, 1);
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

static Py_ssize_t tuple_bound(PyObject ***items, Py_ssize_t ncols, Py_ssize_t r, const char *types)
{
    Py_ssize_t total = 2;
    for (Py_ssize_t c = 0; c < ncols && total >= 0; c++) {
        Py_ssize_t most = field_bound(items[c][r], types[c]);
        total = most < 0 ? -1 : total + most;
    }
    return total;
}

static char *tuple(PyObject ***items, Py_ssize_t ncols, Py_ssize_t r, const char *types, char *to)
{
    to = be16(to, (unsigned)ncols);
    for (Py_ssize_t c = 0; c < ncols && to != NULL; c++)
        to = write_field(items[c][r], types[c], to);
    return to;
}

static const RowWriter TUPLES = {tuple_bound, tuple, 0};

PyObject *copy_binary(PyObject *self, PyObject *args)
{
    PyObject *columns, *skip;
    const char *types;
    Py_ssize_t ntypes;
    if (!PyArg_ParseTuple(args, "O!s#O", &PyList_Type, &columns, &types, &ntypes, &skip))
        return NULL;
    if (PyList_GET_SIZE(columns) != ntypes || ntypes > 1600) {
        PyErr_SetString(PyExc_TypeError, "a type for each column (at most 1,600)");
        return NULL;
    }
    return batch_bytes(columns, types, skip, &TUPLES);
}
