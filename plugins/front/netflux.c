/*
** netflux.c - classify a client frame [seq, COMMAND, args...].
** Anything that is not a JSON array closes the connection; an array with a
** known verb but invalid arguments is answered EINVAL; everything else that
** is well formed but unknown is ignored (the client's PONG relies on it).
** A frame with more values or nesting than any netflux frame has is closed
** before jansson builds a tree of it (netflux.md §12).
*/
#include <math.h>
#include <string.h>
#include "netflux.h"

/* seq must be echoed as sent: 1e6 arrives as a real, JS sent 1000000. */
static json_t *norm_seq(json_t *root)
{
    json_t *seq = json_array_get(root, 0);
    if (json_is_real(seq)) {
        double d = json_real_value(seq);
        if (d == floor(d) && fabs(d) < 9007199254740992.0) {
            json_array_set_new(root, 0, json_integer((json_int_t)d));
            seq = json_array_get(root, 0);
        }
    }
    return json_is_number(seq) ? seq : NULL;
}

/* Netflux frames are flat arrays of a few strings and numbers (netflux.md
** §4); jansson spends ~50-100 bytes per value, so a frame of millions of
** tiny values would cost gigabytes.  Count separators and brackets outside
** strings and give up past the caps: what remains to parse is a few values
** whose size is that of the text.  Malformed text is left to jansson. */
bool nf_shape_within(const char *text, size_t len, size_t max_values, int max_depth)
{
    size_t values = 0;
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
            continue;
        }
        if (c == '"') in_str = true;
        else if (c == '[' || c == '{') {
            if (++depth > max_depth) return false;
            values++;
        } else if (c == ']' || c == '}') depth--;
        else if (c == ',') values++;
        if (values > max_values) return false;
    }
    return true;
}

/* Bytes one content byte takes in the largest text built from it: a
** history line (history.md §5.2) escapes the stored line, which escapes the
** content, and in a cluster the link's JSON escapes the line once more.  So
** '"' ends as 8 bytes, \n as 5 and another control byte (\u00XX) as 9;
** base64, what clients send, stays 1. */
size_t nf_content_cost(const char *s, size_t len)
{
    size_t cost = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        cost += c == '"' || c == '\\' ? 8 : c == '\n' || c == '\r' || c == '\t' ||
                c == '\b' || c == '\f' ? 5 : c < 0x20 ? 9 : 1;
    }
    return cost;
}

int nf_parse(const char *text, size_t len, size_t max_values, nf_req *out)
{
    memset(out, 0, sizeof *out);
    if (!nf_shape_within(text, len, max_values, NF_MAX_DEPTH)) return out->kind = NF_CLOSE;
    json_error_t err;
    out->root = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!out->root || !json_is_array(out->root)) return out->kind = NF_CLOSE;
    json_t *root = out->root;
    size_t n = json_array_size(root);
    if (n < 2) return out->kind = NF_IGNORE;
    out->seq = norm_seq(root);
    /* [0, "", "PONG", ts]: the answer to our PING, no reply. */
    const char *third = json_string_value(json_array_get(root, 2));
    if (out->seq && json_number_value(out->seq) == 0 && third && strcmp(third, "PONG") == 0)
        return out->kind = NF_PONG;
    const char *cmd = json_string_value(json_array_get(root, 1));
    if (!cmd || !out->seq) return out->kind = NF_IGNORE;
    /* A reply needs a usable seq: a non-negative number. */
    if (json_number_value(out->seq) < 0) return out->kind = NF_IGNORE;
    json_t *a1 = json_array_get(root, 2);
    if (strcmp(cmd, "PING") == 0) return out->kind = NF_PING;
    if (strcmp(cmd, "JOIN") == 0 || strcmp(cmd, "LEAVE") == 0) {
        out->target = json_string_value(a1);
        if (!out->target) return out->kind = NF_EINVAL;
        return out->kind = cmd[0] == 'J' ? NF_JOIN : NF_LEAVE;
    }
    if (strcmp(cmd, "MSG") == 0) {
        json_t *c = json_array_get(root, 3);
        out->target = json_string_value(a1);
        out->content = json_string_value(c);
        out->content_len = json_string_length(c);
        if (!out->target || !*out->target || strlen(out->target) > 64 || !out->content)
            return out->kind = NF_EINVAL;
        return out->kind = NF_MSG;
    }
    return out->kind = NF_IGNORE;
}
