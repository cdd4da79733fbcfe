/* json_certain: whether convert.py's convert_json keeps JSON texts as they are, decided without parsing
 * them into Python objects.
 *
 * A text is vouched for when it is strict RFC 8259 JSON (what orjson reads) and none of what makes
 * convert.py look closer: nesting deeper than json_rules.MAX_DEPTH, \u0000, a lone surrogate, a number with
 * more than 100 digits or an exponent beyond 200 (such a number lies between 1e-300 and 1e300 or is 0: a
 * finite double for orjson, and numeric holds it). Anything else is left to orjson and convert.py: the scan may refuse valid JSON, never
 * vouch for what convert.py would change or refuse. A None is skipped: the caller (copy_text.py) has checked
 * that the column takes NULLs. */
#include "copy_fast.h"

#define MAX_JSON_DEPTH 512 /* json_rules.MAX_DEPTH */
#define MAX_NUMBER_DIGITS 100
#define MAX_EXPONENT 200
#define END ((Py_UCS4)0x110000) /* past the end of the text: no character */

#define CH Py_UCS1
#define NAME(x) x##_1
#include "json_scan.h"
#undef CH
#undef NAME

#define CH Py_UCS2
#define NAME(x) x##_2
#include "json_scan.h"
#undef CH
#undef NAME

#define CH Py_UCS4
#define NAME(x) x##_4
#include "json_scan.h"
#undef CH
#undef NAME

static int certain(PyObject *text)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND:
        return certain_1(PyUnicode_1BYTE_DATA(text), n);
    case PyUnicode_2BYTE_KIND:
        return certain_2(PyUnicode_2BYTE_DATA(text), n);
    default:
        return certain_4(PyUnicode_4BYTE_DATA(text), n);
    }
}

PyObject *json_certain(PyObject *self, PyObject *texts)
{
    if (!PyList_CheckExact(texts)) {
        PyErr_SetString(PyExc_TypeError, "json_certain takes a list");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(texts); i++) {
        PyObject *text = PyList_GET_ITEM(texts, i);
        if (text == Py_None) /* the caller has checked the column takes NULLs */
            continue;
        if (!PyUnicode_CheckExact(text) || !certain(text))
            return PyLong_FromSsize_t(i);
    }
    return PyLong_FromLong(-1);
}
