/* json_certain_text: whether convert.py's convert_json keeps a JSON text as it is, decided without parsing
 * it into Python objects.
 *
 * A text is vouched for when it is strict RFC 8259 JSON (what orjson reads) and none of what makes
 * convert.py look closer: nesting deeper than json_rules.MAX_DEPTH, \u0000, a lone surrogate, a number with
 * more than 100 digits or an exponent beyond 200 (such a number lies between 1e-300 and 1e300 or is 0: a
 * finite double for orjson, and numeric holds it). Anything else is left to orjson and convert.py: the scan may refuse valid JSON, never
 * vouch for what convert.py would change or refuse. */
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

int json_certain_text(PyObject *text)
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
