/* The JSON scan of json.c for one width of str (included once per width): CH is its character type,
 * NAME(x) names this width's functions. */

#define AT(i) ((i) < n ? (Py_UCS4)p[i] : END)

static Py_ssize_t NAME(space)(const CH *p, Py_ssize_t n, Py_ssize_t i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

static long NAME(hex4)(const CH *p, Py_ssize_t n, Py_ssize_t *i)
{
    long v = 0;
    for (int k = 0; k < 4; k++, (*i)++) {
        Py_UCS4 c = AT(*i);
        int digit = c >= '0' && c <= '9' ? (int)(c - '0')
                    : c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10)
                    : c >= 'A' && c <= 'F' ? (int)(c - 'A' + 10)
                                           : -1;
        if (digit < 0)
            return -1;
        v = v * 16 + digit;
    }
    return v;
}

/* a string from its opening quote: the index after it, or -1 (invalid, \u0000, a lone surrogate) */
static Py_ssize_t NAME(string)(const CH *p, Py_ssize_t n, Py_ssize_t i)
{
    for (i++;;) {
        Py_UCS4 c = AT(i);
        i++;
        if (c == '"')
            return i;
        if (c < 0x20 || (c >= 0xD800 && c <= 0xDFFF) || c == END)
            return -1;
        if (c != '\\')
            continue;
        c = AT(i);
        i++;
        if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't')
            continue;
        if (c != 'u')
            return -1;
        long u = NAME(hex4)(p, n, &i);
        if (u <= 0 || (u >= 0xDC00 && u <= 0xDFFF))
            return -1;
        if (u >= 0xD800 && u <= 0xDBFF) { /* a pair, or to orjson */
            if (AT(i) != '\\' || AT(i + 1) != 'u')
                return -1;
            i += 2;
            u = NAME(hex4)(p, n, &i);
            if (u < 0xDC00 || u > 0xDFFF)
                return -1;
        }
    }
}

/* a number: the index after it, or -1 (invalid, or more digits or a larger exponent than we vouch for) */
static Py_ssize_t NAME(number)(const CH *p, Py_ssize_t n, Py_ssize_t i)
{
    Py_ssize_t digits = 0, start;
    if (AT(i) == '-')
        i++;
    if (AT(i) == '0') {
        i++;
        digits = 1;
    } else if (AT(i) >= '1' && AT(i) <= '9') {
        for (; AT(i) >= '0' && AT(i) <= '9'; i++)
            digits++;
    } else
        return -1;
    if (AT(i) == '.') {
        start = ++i;
        for (; AT(i) >= '0' && AT(i) <= '9'; i++)
            digits++;
        if (i == start)
            return -1;
    }
    if (AT(i) == 'e' || AT(i) == 'E') {
        i++;
        if (AT(i) == '+' || AT(i) == '-')
            i++;
        long exponent = 0;
        for (start = i; AT(i) >= '0' && AT(i) <= '9'; i++)
            if ((exponent = exponent * 10 + (long)(AT(i) - '0')) > MAX_EXPONENT)
                return -1;
        if (i == start)
            return -1;
    }
    return digits <= MAX_NUMBER_DIGITS ? i : -1;
}

static Py_ssize_t NAME(literal)(const CH *p, Py_ssize_t n, Py_ssize_t i, const char *word)
{
    for (; *word; word++, i++)
        if (AT(i) != (Py_UCS4)(unsigned char)*word)
            return -1;
    return i;
}

/* 1 when the whole text is JSON this scan vouches for (see json.c), else 0 */
static int NAME(certain)(const CH *p, Py_ssize_t n)
{
    char open[MAX_JSON_DEPTH]; /* '{' or '[' of each level */
    int depth = 0;
    Py_ssize_t i = NAME(space)(p, n, 0);
    Py_UCS4 c;
value:
    c = AT(i);
    if (c == '{' || c == '[') {
        if (depth == MAX_JSON_DEPTH)
            return 0;
        open[depth++] = (char)c;
        i = NAME(space)(p, n, i + 1);
        if (AT(i) == (c == '{' ? '}' : ']')) {
            i++;
            depth--;
            goto after;
        }
        if (c == '{')
            goto key;
        goto value;
    }
    if (c == '"')
        i = NAME(string)(p, n, i);
    else if (c == 't')
        i = NAME(literal)(p, n, i, "true");
    else if (c == 'f')
        i = NAME(literal)(p, n, i, "false");
    else if (c == 'n')
        i = NAME(literal)(p, n, i, "null");
    else
        i = NAME(number)(p, n, i);
    if (i < 0)
        return 0;
after:
    i = NAME(space)(p, n, i);
    if (depth == 0)
        return i == n;
    c = AT(i);
    i++;
    if (c == (open[depth - 1] == '{' ? '}' : ']')) {
        depth--;
        goto after;
    }
    if (c != ',')
        return 0;
    i = NAME(space)(p, n, i);
    if (open[depth - 1] == '[')
        goto value;
key:
    if (AT(i) != '"' || (i = NAME(string)(p, n, i)) < 0)
        return 0;
    i = NAME(space)(p, n, i);
    if (AT(i) != ':')
        return 0;
    i = NAME(space)(p, n, i + 1);
    goto value;
}

#undef AT
