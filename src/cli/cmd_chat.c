// deepseek chat -m DIR [--system S] [options]: interactive multi-turn chat.
#include <editline/readline.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/session.h"

typedef struct {
    chat_msg *msgs;
    int n, cap;
} chat_history;

static bool history_add(chat_history *h, const char *role, const char *content) {
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 16;
        chat_msg *p = realloc(h->msgs, (size_t)cap * sizeof *p);
        if (!p) return false;
        h->msgs = p;
        h->cap = cap;
    }
    char *c = strdup(content);
    if (!c) return false;
    h->msgs[h->n++] = (chat_msg){role, c};
    return true;
}

static void history_clear(chat_history *h, int keep) {
    while (h->n > keep) free((char *)h->msgs[--h->n].content);
}

// One line of input without its newline (malloc'd), or NULL at end of input. On a terminal
// with line editing and history; from a pipe, plain lines.
static char *chat_read_line(bool tty) {
    if (tty) {
        char *line = readline("> ");
        if (line && *line) add_history(line);
        return line;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) { free(line); return NULL; }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    return line;
}

int cmd_chat(int argc, char **argv) {
    run_args a;
    int rc = run_parse("chat", argc, argv, &a);
    if (rc >= 0) return rc;
    run_session s;
    ds_error err = {{0}};
    ds_status st = session_open(&s, &a, &err);
    if (st) { session_close(&s); return cli_fail("chat", st, &err); }
    cli_install_signals();
    bool tty = isatty(0);
    if (tty) fprintf(stderr, "chat with %s: /clear forgets the conversation, /exit leaves, Ctrl-C stops a reply\n", a.dir);
    chat_history h = {0};
    int keep = 0;
    if (a.system && history_add(&h, "system", a.system)) keep = 1;
    while (st == DS_OK) {
        cli_interrupted = 0;
        char *line = chat_read_line(tty);
        if (!line) {
            if (cli_interrupted && tty) { fputc('\n', stderr); continue; } // Ctrl-C at the prompt
            break;
        }
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) { free(line); break; }
        if (!strcmp(line, "/clear")) {
            history_clear(&h, keep);
            s.g.n_cached = 0;
            fprintf(stderr, "(conversation cleared)\n");
            free(line);
            continue;
        }
        if (!*line) { free(line); continue; }
        bool ok = history_add(&h, "user", line);
        free(line);
        if (!ok) { st = ds_error_set(&err, DS_ERR_OOM, "out of memory"); break; }
        char *reply = NULL;
        st = session_reply(&s, &a, h.msgs, h.n, NULL, &reply, &err);
        if (st == DS_ERR_INTERRUPTED) st = DS_OK; // Ctrl-C stopped the reply: keep chatting
        if (st == DS_ERR_LIMIT) {
            // The conversation outgrew the context: say so and start over instead of leaving.
            fprintf(stderr, "deepseek chat: %s; use /clear\n", err.msg);
            h.n--;
            free((char *)h.msgs[h.n].content);
            st = DS_OK;
        } else if (st == DS_OK && reply && !history_add(&h, "assistant", reply)) {
            st = ds_error_set(&err, DS_ERR_OOM, "out of memory");
        }
        free(reply);
    }
    history_clear(&h, 0);
    free(h.msgs);
    session_close(&s);
    return st ? cli_fail("chat", st, &err) : 0;
}
