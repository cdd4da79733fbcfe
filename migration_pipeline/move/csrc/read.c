/* A SQLite SELECT read a batch at a time straight into columns: source.Snapshot.stream's rows, without the
 * sqlite3 module's cursor, a tuple a row, or copy_text.py's transposing them (1M tweets read in 1.1 s,
 * against 2.0-2.2 s through the sqlite3 module; bench/migrate_bench.py --profile).
 *
 * In:  select_open(uri, select, params, decode): the database at ``uri`` (a file: URI, opened read-only),
 *      the SELECT, its integer parameters, and the text factory for TEXT that is not UTF-8
 *      (convert.decode_text); select_columns(reader, n): the next ``n`` rows.
 * Out: a reader (a capsule; finalized and closed when it goes); each batch as a list of the SELECT's columns,
 *      each a list of up to ``n`` values, as the sqlite3 module gives them with ``text_factory = str``
 *      and, where it cannot decode a TEXT, ``decode``: INTEGER int, REAL float, TEXT str (``decode(bytes)``
 *      when not UTF-8), BLOB bytes, NULL None. Empty lists once the rows are read.
 * Fails: sqlite3.DatabaseError with SQLite's message, for the file (missing, not a database, damaged) or the
 *      SELECT; what ``decode`` raises.
 *
 * test_copy_fast.py compares it with the sqlite3 module on tables of every storage class. */
#include "copy_fast.h"
#include <sqlite3.h>

#define READER "migration_pipeline.move._copy_fast.reader"

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *stmt;
    PyObject *decode;
    int done;
} Reader;

static void reader_free(PyObject *capsule)
{
    Reader *reader = PyCapsule_GetPointer(capsule, READER);
    if (reader == NULL)
        return;
    sqlite3_finalize(reader->stmt);
    sqlite3_close(reader->db);
    Py_XDECREF(reader->decode);
    PyMem_Free(reader);
}

static PyObject *sqlite_error(sqlite3 *db, const char *what)
{
    PyObject *sqlite = PyImport_ImportModule("sqlite3");
    PyObject *error = sqlite == NULL ? NULL : PyObject_GetAttrString(sqlite, "DatabaseError");
    if (error != NULL)
        PyErr_Format(error, "%s: %s", what, db == NULL ? "out of memory" : sqlite3_errmsg(db));
    Py_XDECREF(error);
    Py_XDECREF(sqlite);
    return NULL;
}

PyObject *select_open(PyObject *self, PyObject *args)
{
    const char *uri, *select;
    PyObject *params, *decode;
    if (!PyArg_ParseTuple(args, "ssO!O", &uri, &select, &PyTuple_Type, &params, &decode))
        return NULL;
    Reader *reader = PyMem_Calloc(1, sizeof *reader);
    if (reader == NULL)
        return PyErr_NoMemory();
    PyObject *capsule = PyCapsule_New(reader, READER, reader_free);
    if (capsule == NULL) {
        PyMem_Free(reader);
        return NULL;
    }
    Py_INCREF(decode);
    reader->decode = decode;
    /* NOMUTEX: one thread at a time uses it (it holds the GIL throughout). Not mapped into memory (mmap_size):
     * 10% faster, but every page read would count in the process's resident memory */
    int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(uri, &reader->db, flags, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(reader->db, select, -1, &reader->stmt, NULL) != SQLITE_OK) {
        sqlite_error(reader->db, "cannot read the snapshot");
        Py_DECREF(capsule);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(params); i++) {
        long long value = PyLong_AsLongLong(PyTuple_GET_ITEM(params, i));
        if (value == -1 && PyErr_Occurred()) {
            Py_DECREF(capsule);
            return NULL;
        }
        if (sqlite3_bind_int64(reader->stmt, (int)i + 1, value) != SQLITE_OK) {
            sqlite_error(reader->db, "cannot bind the SELECT's parameters");
            Py_DECREF(capsule);
            return NULL;
        }
    }
    return capsule;
}

/* column ``c`` of the current row as the sqlite3 module gives it (see above); NULL on error */
static PyObject *value(Reader *reader, int c)
{
    sqlite3_stmt *stmt = reader->stmt;
    switch (sqlite3_column_type(stmt, c)) {
    case SQLITE_INTEGER:
        return PyLong_FromLongLong(sqlite3_column_int64(stmt, c));
    case SQLITE_FLOAT:
        return PyFloat_FromDouble(sqlite3_column_double(stmt, c));
    case SQLITE_TEXT: {
        const char *text = (const char *)sqlite3_column_text(stmt, c);
        int n = sqlite3_column_bytes(stmt, c);
        if (text == NULL && sqlite3_errcode(reader->db) == SQLITE_NOMEM)
            return PyErr_NoMemory();
        PyObject *decoded = PyUnicode_DecodeUTF8(text == NULL ? "" : text, n, NULL);
        if (decoded != NULL || !PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            return decoded;
        PyErr_Clear();
        PyObject *raw = PyBytes_FromStringAndSize(text, n);
        if (raw == NULL)
            return NULL;
        decoded = PyObject_CallOneArg(reader->decode, raw);
        Py_DECREF(raw);
        return decoded;
    }
    case SQLITE_BLOB: {
        const void *blob = sqlite3_column_blob(stmt, c);
        int n = sqlite3_column_bytes(stmt, c);
        if (blob == NULL && n > 0)
            return PyErr_NoMemory();
        return PyBytes_FromStringAndSize(blob == NULL ? "" : blob, n);
    }
    default:
        Py_RETURN_NONE;
    }
}

PyObject *select_columns(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "On", &capsule, &n))
        return NULL;
    Reader *reader = PyCapsule_GetPointer(capsule, READER);
    if (reader == NULL)
        return NULL;
    int width = sqlite3_column_count(reader->stmt);
    if (n < 0 || n > PY_SSIZE_T_MAX / ((Py_ssize_t)width + 1) / (Py_ssize_t)sizeof(PyObject *)) {
        PyErr_SetString(PyExc_ValueError, "a batch of 0 or more rows");
        return NULL;
    }
    PyObject **values = PyMem_Malloc((n * width + 1) * sizeof *values);
    if (values == NULL)
        return PyErr_NoMemory();
    Py_ssize_t rows = 0, made = 0;
    int failed = 0;
    while (rows < n && !reader->done && !failed) {
        int rc = sqlite3_step(reader->stmt);
        if (rc == SQLITE_DONE) {
            reader->done = 1;
            break;
        }
        if (rc != SQLITE_ROW) {
            sqlite_error(reader->db, "cannot read the snapshot");
            failed = 1;
            break;
        }
        for (int c = 0; c < width; c++) {
            PyObject *v = value(reader, c);
            if (v == NULL) {
                failed = 1;
                break;
            }
            values[made++] = v;
        }
        rows += !failed;
    }
    PyObject *out = failed ? NULL : PyList_New(width);
    for (int c = 0; out != NULL && c < width; c++) {
        PyObject *column = PyList_New(rows);
        if (column == NULL) {
            Py_CLEAR(out);
            break;
        }
        for (Py_ssize_t r = 0; r < rows; r++) {
            PyList_SET_ITEM(column, r, values[r * width + c]);
            values[r * width + c] = NULL; /* the list holds it now */
        }
        PyList_SET_ITEM(out, c, column);
    }
    for (Py_ssize_t i = 0; i < made; i++)
        Py_XDECREF(values[i]); /* what no list took: an error's */
    PyMem_Free(values);
    return out;
}
