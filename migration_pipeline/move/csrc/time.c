/* copy_time.timestamp_texts, compiled: UTC timestamps in SQLite's and ISO 8601's shapes, Twitter's dates and
 * integer epochs as the ISO 8601 text of their moment, without datetime; None for any other value. */
#include "copy_fast.h"

#define EPOCH_MS_THRESHOLD 100000000000LL /* convert.EPOCH_MS_THRESHOLD */
#define LAST_SECOND 253402300799LL        /* 9999-12-31 23:59:59 */

static const char WEEKDAYS[7][4] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char MONTHS[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

int two_digits(const Py_UCS1 *p, int lo, int hi)
{
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
        return -1;
    int v = (p[0] - '0') * 10 + (p[1] - '0');
    return v < lo || v > hi ? -1 : v;
}

int four_digits(const Py_UCS1 *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* whether the date exists (as datetime.date takes it: years 1-9999) */
int date_exists(int year, int month, int day)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    return year >= 1 && month >= 1 && day >= 1 && day <= days[month - 1] + (month == 2 && leap);
}

/* days from 1970-01-01 to a date, and back (H. Hinnant's civil calendar algorithms) */
long long days_from_civil(long long y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

static void civil_from_days(long long z, int *y, int *m, int *d)
{
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static PyObject *ascii(const char *text, Py_ssize_t n)
{
    PyObject *out = PyUnicode_New(n, 127);
    if (out != NULL)
        memcpy(PyUnicode_1BYTE_DATA(out), text, n);
    return out;
}

/* copy_time._UTC_SHAPES on a date that exists: the value itself when it ends in Z, else with +00 */
static PyObject *utc_shape(PyObject *s, const Py_UCS1 *p, Py_ssize_t n)
{
    int year = four_digits(p), month = two_digits(p + 5, 1, 12), day = two_digits(p + 8, 1, 31);
    if (year < 0 || p[4] != '-' || month < 0 || p[7] != '-' || day < 0 || !date_exists(year, month, day))
        Py_RETURN_NONE;
    if ((p[10] != ' ' && p[10] != 'T') || two_digits(p + 11, 0, 23) < 0 || p[13] != ':' ||
        two_digits(p + 14, 0, 59) < 0 || p[16] != ':' || two_digits(p + 17, 0, 59) < 0)
        Py_RETURN_NONE;
    if (n == 19) {
        char text[22];
        memcpy(text, p, 19);
        memcpy(text + 19, "+00", 3);
        return ascii(text, 22);
    }
    if (n == 24 && (p[19] != '.' || p[20] < '0' || p[20] > '9' || p[21] < '0' || p[21] > '9' ||
                    p[22] < '0' || p[22] > '9'))
        Py_RETURN_NONE;
    if (p[n - 1] != 'Z')
        Py_RETURN_NONE;
    Py_INCREF(s);
    return s;
}

/* copy_time._TWITTER_UTC (``Sat Feb 17 05:51:53 +0000 2024``), its weekday right: ``2024-02-17 05:51:53+00`` */
static PyObject *twitter_date(const Py_UCS1 *p)
{
    int weekday = -1, month = -1;
    for (int i = 0; i < 7; i++)
        if (memcmp(p, WEEKDAYS[i], 3) == 0)
            weekday = i;
    for (int i = 0; i < 12; i++)
        if (memcmp(p + 4, MONTHS[i], 3) == 0)
            month = i + 1;
    int day = two_digits(p + 8, 1, 31), year = four_digits(p + 26);
    if (weekday < 0 || p[3] != ' ' || month < 0 || p[7] != ' ' || day < 0 || p[10] != ' ' ||
        two_digits(p + 11, 0, 23) < 0 || p[13] != ':' || two_digits(p + 14, 0, 59) < 0 || p[16] != ':' ||
        two_digits(p + 17, 0, 59) < 0 || memcmp(p + 19, " +0000 ", 7) != 0 || year < 0 ||
        !date_exists(year, month, day))
        Py_RETURN_NONE;
    long long days = days_from_civil(year, month, day);
    if ((int)(((days % 7) + 7 + 3) % 7) != weekday) /* 1970-01-01 was a Thursday */
        Py_RETURN_NONE;
    char text[23];
    PyOS_snprintf(text, sizeof text, "%04d-%02d-%02d %.8s+00", year, month, day, (const char *)p + 11);
    return ascii(text, 22);
}

/* copy_time._epoch_text: whole seconds, or milliseconds from EPOCH_MS_THRESHOLD on, 1970 to 9999 */
static PyObject *epoch(PyObject *value)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow), millis = -1;
    if (v == -1 && PyErr_Occurred())
        return NULL;
    if (overflow || v < 0)
        Py_RETURN_NONE;
    if (v >= EPOCH_MS_THRESHOLD) {
        if (v > LAST_SECOND * 1000 + 999)
            Py_RETURN_NONE;
        millis = v % 1000;
        v /= 1000;
    }
    int year, month, day, second = (int)(v % 86400);
    civil_from_days(v / 86400, &year, &month, &day);
    char text[40];
    int n = PyOS_snprintf(text, sizeof text, "%04d-%02d-%02d %02d:%02d:%02d", year, month, day, second / 3600,
                          second / 60 % 60, second % 60);
    if (millis > 0)
        n += PyOS_snprintf(text + n, sizeof text - n, ".%03lld", millis);
    memcpy(text + n, "+00", 3);
    return ascii(text, n + 3);
}

static PyObject *timestamp_text(PyObject *value)
{
    if (PyLong_CheckExact(value))
        return epoch(value);
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_ASCII(value))
        Py_RETURN_NONE;
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    const Py_UCS1 *p = PyUnicode_1BYTE_DATA(value);
    if (n == 19 || n == 20 || n == 24)
        return utc_shape(value, p, n);
    if (n == 30)
        return twitter_date(p);
    Py_RETURN_NONE;
}

PyObject *timestamp_texts(PyObject *self, PyObject *values)
{
    if (!PyList_CheckExact(values)) {
        PyErr_SetString(PyExc_TypeError, "timestamp_texts takes a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *text = timestamp_text(PyList_GET_ITEM(values, i));
        if (text == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, text);
    }
    return out;
}
