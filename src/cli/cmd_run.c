// deepseek run -m DIR -p PROMPT [--system S] [--raw] [options]
#include <stdlib.h>

#include "cli/cli.h"
#include "cli/session.h"

int cmd_run(int argc, char **argv) {
    run_args a;
    int rc = run_parse("run", argc, argv, &a);
    if (rc >= 0) return rc;
    run_session s;
    ds_error err = {{0}};
    ds_status st = session_open(&s, &a, &err);
    if (!st) {
        cli_install_signals();
        chat_msg msgs[2];
        int n = 0;
        if (a.system) msgs[n++] = (chat_msg){"system", a.system};
        msgs[n++] = (chat_msg){"user", a.prompt};
        char *reply = NULL;
        st = session_reply(&s, &a, msgs, n, a.raw ? a.prompt : NULL, &reply, &err);
        if (st == DS_ERR_INTERRUPTED) st = DS_OK;
        free(reply);
    }
    session_close(&s);
    return st ? cli_fail("run", st, &err) : 0;
}
