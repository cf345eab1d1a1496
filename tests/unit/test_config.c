// config.json parsing: the real DeepSeek-V3 values, defaults, variants and every error path.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "model/config.h"
#include "test_util.h"

// The HF config.json of DeepSeek-V3 / R1 (architecture page, section 2.1).
static const char *v3_json =
    "{\"architectures\":[\"DeepseekV3ForCausalLM\"],\"model_type\":\"deepseek_v3\",\"vocab_size\":129280,"
    "\"hidden_size\":7168,\"intermediate_size\":18432,\"moe_intermediate_size\":2048,\"num_hidden_layers\":61,"
    "\"num_nextn_predict_layers\":1,\"num_attention_heads\":128,\"num_key_value_heads\":128,\"n_shared_experts\":1,"
    "\"n_routed_experts\":256,\"num_experts_per_tok\":8,\"n_group\":8,\"topk_group\":4,\"routed_scaling_factor\":2.5,"
    "\"scoring_func\":\"sigmoid\",\"topk_method\":\"noaux_tc\",\"norm_topk_prob\":true,\"first_k_dense_replace\":3,"
    "\"moe_layer_freq\":1,\"q_lora_rank\":1536,\"kv_lora_rank\":512,\"qk_nope_head_dim\":128,\"qk_rope_head_dim\":64,"
    "\"v_head_dim\":128,\"hidden_act\":\"silu\",\"rope_theta\":10000,\"rope_scaling\":{\"beta_fast\":32,\"beta_slow\":1,"
    "\"factor\":40,\"mscale\":1.0,\"mscale_all_dim\":1.0,\"original_max_position_embeddings\":4096,\"type\":\"yarn\"},"
    "\"max_position_embeddings\":163840,\"rms_norm_eps\":1e-06,\"bos_token_id\":0,\"eos_token_id\":1,"
    "\"tie_word_embeddings\":false,\"attention_bias\":false,\"quantization_config\":{\"activation_scheme\":\"dynamic\","
    "\"fmt\":\"e4m3\",\"quant_method\":\"fp8\",\"weight_block_size\":[128,128]}}";

static void test_v3(void **state) {
    (void)state;
    ds_config c;
    ds_error err;
    assert_int_equal(ds_config_parse(&c, v3_json, "config.json", &err), DS_OK);
    assert_int_equal(c.arch, DS_ARCH_DEEPSEEK_V3);
    assert_int_equal(c.hidden_size, 7168);
    assert_int_equal(c.q_lora_rank, 1536);
    assert_int_equal(c.topk_method, DS_TOPK_NOAUX_TC);
    assert_true(c.rope.yarn);
    assert_true(c.fp8);
    assert_float_equal(c.rope.factor, 40.0f, 0);
    assert_false(ds_config_layer_is_moe(&c, 2));
    assert_true(ds_config_layer_is_moe(&c, 3));
    // softmax scale from the architecture page: 192^-0.5 * 1.368888^2
    assert_float_equal(ds_config_softmax_scale(&c), 0.1352338f, 1e-6);
}

// Replaces the first occurrence of `from` in the V3 JSON by `to` and parses it.
static ds_status parse_edit(const char *from, const char *to, ds_config *c, ds_error *err) {
    char buf[4096];
    const char *at = strstr(v3_json, from);
    assert_non_null(at);
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - v3_json), v3_json, to, at + strlen(from));
    return ds_config_parse(c, buf, "config.json", err);
}

static void expect_error(const char *from, const char *to, const char *key) {
    ds_config c;
    ds_error err = {{0}};
    ds_status st = parse_edit(from, to, &c, &err);
    if (st != DS_ERR_CONFIG) fail_msg("edit '%s' -> '%s': expected a config error, got %d", from, to, st);
    if (!strstr(err.msg, key) || !strstr(err.msg, "config.json")) fail_msg("message '%s' does not name '%s'", err.msg, key);
}

static void test_errors(void **state) {
    (void)state;
    expect_error("\"model_type\":\"deepseek_v3\"", "\"model_type\":\"llama4\"", "model_type");
    expect_error("\"model_type\":\"deepseek_v3\",", "", "model_type");
    expect_error("\"hidden_size\":7168,", "", "hidden_size");
    expect_error("\"hidden_size\":7168", "\"hidden_size\":\"big\"", "hidden_size");
    expect_error("\"hidden_size\":7168", "\"hidden_size\":-5", "hidden_size");
    expect_error("\"hidden_size\":7168", "\"hidden_size\":7168.5", "hidden_size");
    expect_error("\"vocab_size\":129280,", "", "vocab_size");
    expect_error("\"kv_lora_rank\":512", "\"kv_lora_rank\":0", "kv_lora_rank");
    expect_error("\"qk_rope_head_dim\":64", "\"qk_rope_head_dim\":63", "qk_rope_head_dim");
    expect_error("\"n_group\":8", "\"n_group\":7", "n_group");
    expect_error("\"topk_group\":4", "\"topk_group\":9", "topk_group");
    expect_error("\"num_experts_per_tok\":8", "\"num_experts_per_tok\":300", "num_experts_per_tok");
    expect_error("\"scoring_func\":\"sigmoid\"", "\"scoring_func\":\"relu\"", "scoring_func");
    expect_error("\"topk_method\":\"noaux_tc\"", "\"topk_method\":\"random\"", "topk_method");
    expect_error("\"norm_topk_prob\":true", "\"norm_topk_prob\":1", "norm_topk_prob");
    expect_error("\"type\":\"yarn\"", "\"type\":\"longrope\"", "rope_scaling.type");
    expect_error("\"factor\":40,", "", "factor");
    expect_error("\"hidden_act\":\"silu\"", "\"hidden_act\":\"gelu\"", "hidden_act");
    expect_error("\"quant_method\":\"fp8\"", "\"quant_method\":\"gptq\"", "quant_method");
    expect_error("\"weight_block_size\":[128,128]", "\"weight_block_size\":[64,64]", "weight_block_size");
    expect_error("\"eos_token_id\":1", "\"eos_token_id\":200000", "eos_token_id");
    ds_config c;
    ds_error err;
    assert_int_equal(ds_config_parse(&c, "{\"model_type\": ", "config.json", &err), DS_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "invalid JSON"));
    assert_int_equal(ds_config_parse(&c, "[1,2]", "config.json", &err), DS_ERR_CONFIG);
}

static void test_variants(void **state) {
    (void)state;
    ds_config c;
    ds_error err;
    // q_lora_rank null / 0 / absent all mean q_proj
    assert_int_equal(parse_edit("\"q_lora_rank\":1536", "\"q_lora_rank\":null", &c, &err), DS_OK);
    assert_int_equal(c.q_lora_rank, 0);
    assert_int_equal(parse_edit("\"q_lora_rank\":1536", "\"q_lora_rank\":0", &c, &err), DS_OK);
    assert_int_equal(c.q_lora_rank, 0);
    // rope_type spelling, "gready", transformers 5 rope_parameters
    assert_int_equal(parse_edit("\"type\":\"yarn\"", "\"rope_type\":\"yarn\"", &c, &err), DS_OK);
    assert_true(c.rope.yarn);
    assert_int_equal(parse_edit("\"rope_scaling\":", "\"rope_parameters\":{\"rope_type\":\"yarn\",\"rope_theta\":50000,"
                                "\"factor\":8,\"original_max_position_embeddings\":2048},\"x\":", &c, &err), DS_OK);
    assert_true(c.rope.yarn);
    assert_float_equal(c.rope.theta, 50000.0f, 0);
    assert_float_equal(c.rope.factor, 8.0f, 0);
    assert_int_equal(parse_edit("\"rope_scaling\":{", "\"rope_scaling\":null,\"y\":{", &c, &err), DS_OK);
    assert_false(c.rope.yarn);
    // V2-Lite style config with defaults
    const char *v2 = "{\"model_type\":\"deepseek_v2\",\"vocab_size\":102400,\"hidden_size\":2048,\"intermediate_size\":10944,"
                     "\"moe_intermediate_size\":1408,\"num_hidden_layers\":27,\"num_attention_heads\":16,"
                     "\"n_routed_experts\":64,\"n_shared_experts\":2,\"num_experts_per_tok\":6,\"topk_method\":\"gready\","
                     "\"first_k_dense_replace\":1,\"kv_lora_rank\":512,\"qk_nope_head_dim\":128,\"qk_rope_head_dim\":64,"
                     "\"v_head_dim\":128,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":40,\"original_max_position_embeddings\":4096,"
                     "\"mscale\":0.707,\"mscale_all_dim\":0.707}}";
    assert_int_equal(ds_config_parse(&c, v2, "config.json", &err), DS_OK);
    assert_int_equal(c.arch, DS_ARCH_DEEPSEEK_V2);
    assert_int_equal(c.topk_method, DS_TOPK_GREEDY);
    assert_int_equal(c.scoring_func, DS_SCORE_SOFTMAX);
    assert_false(c.norm_topk_prob);
    assert_int_equal(c.q_lora_rank, 0);
    assert_int_equal(c.num_nextn_predict_layers, 0);
    assert_float_equal(ds_config_softmax_scale(&c), 0.1147214f, 1e-6);
}

static void test_save_roundtrip(void **state) {
    (void)state;
    ds_config c, d;
    ds_error err;
    assert_int_equal(ds_config_parse(&c, v3_json, "config.json", &err), DS_OK);
    char *dir = test_mkdtemp();
    assert_int_equal(ds_config_save(&c, dir, &err), DS_OK);
    assert_int_equal(ds_config_load(&d, dir, &err), DS_OK);
    assert_memory_equal(&c, &d, sizeof c);
    test_rmdir(dir);
    assert_int_equal(ds_config_load(&d, "/nonexistent-dir", &err), DS_ERR_IO);
    assert_non_null(strstr(err.msg, "config.json"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v3),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_variants),
        cmocka_unit_test(test_save_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
