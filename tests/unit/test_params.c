// Training parameter store: random init equals `init`'s checkpoint, load/save round trips
// byte for byte (f32), fp8 checkpoints load as their dequantisation, MTP copies are shared.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "io/fileutil.h"
#include "model/init.h"
#include "model/model.h"
#include "test_util.h"
#include "train/params.h"

static int files_equal(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    ds_error err;
    int eq = file_read_all(a, &x, &nx, &err) == DS_OK && file_read_all(b, &y, &ny, &err) == DS_OK && nx == ny &&
             memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return eq;
}

static void test_roundtrip(void **state) {
    (void)state;
    char *dir = test_mkdtemp(), *out = test_mkdtemp();
    ds_config c;
    ds_error err = {{0}};
    assert_int_equal(ds_preset_config(&c, "tiny", &err), DS_OK);
    ds_init_params ip = {.dtype = DS_INIT_F32, .seed = 9};
    assert_int_equal(ds_init_write(&c, &ip, dir, &err), DS_OK);

    param_store a, b;
    assert_int_equal(params_init_random(&a, &c, 9, &err), DS_OK);
    if (params_load(&b, dir, &err)) fail_msg("%s", err.msg);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.params, b.params, (size_t)a.n * sizeof(float));
    // the MTP embedding is the main embedding, physically
    int e = params_find(&b, "model.embed_tokens.weight"), me = params_find(&b, "model.layers.4.embed_tokens.weight");
    assert_true(e >= 0 && me >= 0);
    assert_ptr_equal(params_data(&b, e), params_data(&b, me));
    assert_true(b.list.t[params_find(&b, "model.layers.0.self_attn.o_proj.weight")].is_matrix);
    assert_false(b.list.t[params_find(&b, "model.norm.weight")].is_matrix);

    if (params_save(&b, out, DS_F32, NULL, &err)) fail_msg("%s", err.msg);
    const char *names[] = {"config.json", "model.safetensors.index.json", "model-00001-of-00003.safetensors",
                           "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *p = file_join(dir, names[i]), *q = file_join(out, names[i]);
        if (!files_equal(p, q)) fail_msg("%s differs after load + save", names[i]);
        free(p);
        free(q);
    }
    assert_int_equal(params_save(&b, out, DS_F8_E4M3, NULL, &err), DS_ERR_ARG);
    params_free(&a);
    params_free(&b);

    // fp8: loads as the exact dequantisation the engine uses
    assert_int_equal(ds_init_write(&c, &(ds_init_params){.dtype = DS_INIT_FP8, .seed = 9}, out, &err), DS_OK);
    if (params_load(&a, out, &err)) fail_msg("%s", err.msg);
    ds_model m;
    assert_int_equal(ds_model_load(&m, out, &err), DS_OK);
    int k = params_find(&a, "model.layers.1.self_attn.kv_b_proj.weight");
    const ds_tensor *kvb = &m.layers[1].kv_b;
    assert_int_equal(kvb->dtype, DS_F8_E4M3);
    float row[64];
    for (int r = 0; r < kvb->shape[0]; r++) {
        ds_tensor_row_to_f32(kvb, r, row);
        assert_memory_equal(row, params_data(&a, k) + r * kvb->shape[1], (size_t)kvb->shape[1] * sizeof(float));
    }
    ds_model_free(&m);
    params_free(&a);
    test_rmdir(dir);
    test_rmdir(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_roundtrip)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
