#include "model/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileutil.h"

// A key is "required" when no sensible default exists for a user's checkpoint (the shapes);
// behavioural keys take the Hugging Face defaults of the model_type.
typedef struct {
    const cJSON *root;
    const char *where;
    ds_error *err;
} cfg_reader;

static ds_status cfg_bad(cfg_reader *r, const char *key, const char *what) {
    return ds_error_set(r->err, DS_ERR_CONFIG, "%s: key '%s': %s", r->where, key, what);
}

static const cJSON *cfg_item(cfg_reader *r, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r->root, key);
    return (it && !cJSON_IsNull(it)) ? it : NULL;
}

// Reads an integer in [lo, hi]. `def` < lo means required.
static ds_status cfg_int(cfg_reader *r, const char *key, int *out, long def, long lo, long hi) {
    const cJSON *it = cfg_item(r, key);
    if (!it) {
        if (def < lo) return cfg_bad(r, key, "missing (required)");
        *out = (int)def;
        return DS_OK;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble))
        return cfg_bad(r, key, "expected an integer");
    if (it->valuedouble < (double)lo || it->valuedouble > (double)hi) {
        char msg[128];
        snprintf(msg, sizeof msg, "%.0f is out of range [%ld, %ld]", it->valuedouble, lo, hi);
        return cfg_bad(r, key, msg);
    }
    *out = (int)it->valuedouble;
    return DS_OK;
}

static ds_status cfg_float(cfg_reader *r, const cJSON *obj, const char *key, float *out, double def, double lo, double hi) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it)) {
        if (isnan(def)) return cfg_bad(r, key, "missing (required)");
        *out = (float)def;
        return DS_OK;
    }
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= lo && it->valuedouble <= hi)) {
        char msg[128];
        snprintf(msg, sizeof msg, "expected a number in [%g, %g]", lo, hi);
        return cfg_bad(r, key, msg);
    }
    *out = (float)it->valuedouble;
    return DS_OK;
}

static ds_status cfg_bool(cfg_reader *r, const char *key, bool *out, bool def) {
    const cJSON *it = cfg_item(r, key);
    if (!it) { *out = def; return DS_OK; }
    if (!cJSON_IsBool(it)) return cfg_bad(r, key, "expected true or false");
    *out = cJSON_IsTrue(it);
    return DS_OK;
}

static const char *cfg_string(cfg_reader *r, const cJSON *obj, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

#define TRY(x) do { ds_status s_ = (x); if (s_ != DS_OK) return s_; } while (0)
#define BIG 1000000000L

static ds_status cfg_parse_rope(cfg_reader *r, ds_config *c) {
    rope_params *p = &c->rope;
    p->dim = c->qk_rope_head_dim;
    p->yarn = 0;
    p->factor = 1.0f;
    p->orig_max_pos = c->max_position_embeddings;
    p->beta_fast = 32.0f;
    p->beta_slow = 1.0f;
    p->mscale = 1.0f;
    p->mscale_all_dim = 0.0f;
    // transformers 5.x folds rope_theta and rope_scaling into rope_parameters.
    const cJSON *params = cfg_item(r, "rope_parameters");
    const cJSON *scaling = params ? params : cfg_item(r, "rope_scaling");
    TRY(cfg_float(r, params ? params : r->root, "rope_theta", &p->theta, 10000.0, 1e-6, 1e12));
    if (!scaling) return DS_OK;
    if (!cJSON_IsObject(scaling)) return cfg_bad(r, params ? "rope_parameters" : "rope_scaling", "expected an object or null");
    const char *type = cfg_string(r, scaling, "type");
    if (!type) type = cfg_string(r, scaling, "rope_type");
    if (!type) return cfg_bad(r, "rope_scaling.type", "missing");
    if (strcmp(type, "default") == 0) return DS_OK;
    if (strcmp(type, "yarn") != 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "unsupported RoPE scaling '%.60s' (DeepSeek models use 'yarn')", type);
        return cfg_bad(r, "rope_scaling.type", msg);
    }
    p->yarn = 1;
    TRY(cfg_float(r, scaling, "factor", &p->factor, NAN, 1.0, 1e6));
    float orig;
    TRY(cfg_float(r, scaling, "original_max_position_embeddings", &orig, 4096, 1, 1e9));
    p->orig_max_pos = (int)orig;
    TRY(cfg_float(r, scaling, "beta_fast", &p->beta_fast, 32.0, 1e-6, 1e6));
    TRY(cfg_float(r, scaling, "beta_slow", &p->beta_slow, 1.0, 1e-6, 1e6));
    TRY(cfg_float(r, scaling, "mscale", &p->mscale, 1.0, 0, 1e3));
    TRY(cfg_float(r, scaling, "mscale_all_dim", &p->mscale_all_dim, 0.0, 0, 1e3));
    return DS_OK;
}

static ds_status cfg_parse_moe(cfg_reader *r, ds_config *c) {
    bool v3 = c->arch == DS_ARCH_DEEPSEEK_V3;
    TRY(cfg_int(r, "n_routed_experts", &c->n_routed_experts, v3 ? 256 : 0, 0, 4096));
    TRY(cfg_int(r, "n_shared_experts", &c->n_shared_experts, v3 ? 1 : 0, 0, 1 << 10));
    TRY(cfg_int(r, "moe_intermediate_size", &c->moe_intermediate_size, c->n_routed_experts ? -1 : 0, 0, BIG));
    TRY(cfg_int(r, "num_experts_per_tok", &c->num_experts_per_tok, v3 ? 8 : (c->n_routed_experts ? -1 : 0), 0, 1 << 20));
    TRY(cfg_int(r, "n_group", &c->n_group, v3 ? 8 : 1, 1, 1024));
    TRY(cfg_int(r, "topk_group", &c->topk_group, v3 ? 4 : 1, 1, 1 << 20));
    TRY(cfg_int(r, "first_k_dense_replace", &c->first_k_dense_replace, v3 ? 3 : 0, 0, BIG));
    TRY(cfg_int(r, "moe_layer_freq", &c->moe_layer_freq, 1, 1, BIG));
    TRY(cfg_float(r, r->root, "routed_scaling_factor", &c->routed_scaling_factor, v3 ? 2.5 : 1.0, 0, 1e6));
    TRY(cfg_bool(r, "norm_topk_prob", &c->norm_topk_prob, v3));

    const cJSON *sf = cfg_item(r, "scoring_func");
    const char *score = sf ? (cJSON_IsString(sf) ? sf->valuestring : "") : (v3 ? "sigmoid" : "softmax");
    if (strcmp(score, "sigmoid") == 0) c->scoring_func = DS_SCORE_SIGMOID;
    else if (strcmp(score, "softmax") == 0) c->scoring_func = DS_SCORE_SOFTMAX;
    else return cfg_bad(r, "scoring_func", "expected \"sigmoid\" or \"softmax\"");

    const cJSON *tm = cfg_item(r, "topk_method");
    const char *method = tm ? (cJSON_IsString(tm) ? tm->valuestring : "") : (v3 ? "noaux_tc" : "greedy");
    if (strcmp(method, "noaux_tc") == 0) c->topk_method = DS_TOPK_NOAUX_TC;
    else if (strcmp(method, "group_limited_greedy") == 0) c->topk_method = DS_TOPK_GROUP_LIMITED_GREEDY;
    else if (strcmp(method, "greedy") == 0 || strcmp(method, "gready") == 0) c->topk_method = DS_TOPK_GREEDY;
    else return cfg_bad(r, "topk_method", "expected \"noaux_tc\", \"group_limited_greedy\" or \"greedy\"");

    if (c->n_routed_experts == 0) return DS_OK;
    int E = c->n_routed_experts;
    if (c->num_experts_per_tok < 1 || c->num_experts_per_tok > E)
        return cfg_bad(r, "num_experts_per_tok", "must be in [1, n_routed_experts]");
    if (E % c->n_group != 0) return cfg_bad(r, "n_group", "must divide n_routed_experts");
    if (c->topk_group > c->n_group) return cfg_bad(r, "topk_group", "must be <= n_group");
    if (c->topk_method != DS_TOPK_GREEDY && c->n_group > 1) {
        int per_group = E / c->n_group;
        if (c->topk_method == DS_TOPK_NOAUX_TC && per_group < 2)
            return cfg_bad(r, "n_group", "noaux_tc scores groups by their top-2 experts: need >= 2 experts per group");
        if (c->topk_group * per_group < c->num_experts_per_tok)
            return cfg_bad(r, "topk_group", "the kept groups hold fewer experts than num_experts_per_tok");
    }
    if (c->topk_method == DS_TOPK_NOAUX_TC && c->scoring_func != DS_SCORE_SIGMOID)
        return cfg_bad(r, "scoring_func", "noaux_tc routing needs \"sigmoid\"");
    return DS_OK;
}

static ds_status cfg_parse_quant(cfg_reader *r, ds_config *c) {
    c->fp8 = false;
    const cJSON *q = cfg_item(r, "quantization_config");
    if (!q) return DS_OK;
    const char *method = cfg_string(r, q, "quant_method");
    if (!method || strcmp(method, "fp8") != 0)
        return cfg_bad(r, "quantization_config.quant_method", "only \"fp8\" (the official DeepSeek FP8 release) is supported");
    const char *fmt = cfg_string(r, q, "fmt");
    if (fmt && strcmp(fmt, "e4m3") != 0) return cfg_bad(r, "quantization_config.fmt", "only \"e4m3\" is supported");
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(q, "weight_block_size");
    if (bs && !(cJSON_IsArray(bs) && cJSON_GetArraySize(bs) == 2 &&
                cJSON_IsNumber(cJSON_GetArrayItem(bs, 0)) && cJSON_GetArrayItem(bs, 0)->valuedouble == 128 &&
                cJSON_IsNumber(cJSON_GetArrayItem(bs, 1)) && cJSON_GetArrayItem(bs, 1)->valuedouble == 128))
        return cfg_bad(r, "quantization_config.weight_block_size", "only [128, 128] is supported");
    c->fp8 = true;
    return DS_OK;
}

ds_status ds_config_parse(ds_config *c, const char *json, const char *where, ds_error *err) {
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_Parse(json);
    if (!root) return ds_error_set(err, DS_ERR_CONFIG, "%s: invalid JSON", where);
    cfg_reader r = {root, where, err};
    ds_status st = DS_OK;
    if (!cJSON_IsObject(root)) { st = ds_error_set(err, DS_ERR_CONFIG, "%s: expected a JSON object", where); goto done; }

    const char *mt = cfg_string(&r, root, "model_type");
    if (!mt) { st = cfg_bad(&r, "model_type", "missing (expected \"deepseek_v3\" or \"deepseek_v2\")"); goto done; }
    if (strcmp(mt, "deepseek_v3") == 0) c->arch = DS_ARCH_DEEPSEEK_V3;
    else if (strcmp(mt, "deepseek_v2") == 0) c->arch = DS_ARCH_DEEPSEEK_V2;
    else {
        char msg[160];
        snprintf(msg, sizeof msg, "unsupported model_type \"%.60s\" (expected \"deepseek_v3\" or \"deepseek_v2\")", mt);
        st = cfg_bad(&r, "model_type", msg);
        goto done;
    }
    bool v3 = c->arch == DS_ARCH_DEEPSEEK_V3;
#define INT(key, field, def, lo, hi) if ((st = cfg_int(&r, key, &c->field, def, lo, hi)) != DS_OK) goto done
    INT("vocab_size", vocab_size, -1, 1, BIG);
    INT("hidden_size", hidden_size, -1, 1, BIG);
    INT("intermediate_size", intermediate_size, -1, 1, BIG);
    INT("num_hidden_layers", num_hidden_layers, -1, 1, 100000);
    INT("num_nextn_predict_layers", num_nextn_predict_layers, 0, 0, 1);
    INT("num_attention_heads", num_attention_heads, -1, 1, 1 << 16);
    INT("num_key_value_heads", num_key_value_heads, c->num_attention_heads, 1, 1 << 16);
    INT("q_lora_rank", q_lora_rank, 0, 0, BIG);
    INT("kv_lora_rank", kv_lora_rank, -1, 1, BIG);
    INT("qk_nope_head_dim", qk_nope_head_dim, -1, 1, BIG);
    INT("qk_rope_head_dim", qk_rope_head_dim, -1, 2, BIG);
    INT("v_head_dim", v_head_dim, -1, 1, BIG);
    INT("max_position_embeddings", max_position_embeddings, v3 ? 4096 : 2048, 1, BIG);
    INT("bos_token_id", bos_token_id, -1, -1, BIG);
    INT("eos_token_id", eos_token_id, -1, -1, BIG);
#undef INT
    if (c->qk_rope_head_dim % 2) { st = cfg_bad(&r, "qk_rope_head_dim", "must be even (RoPE rotates pairs)"); goto done; }
    if ((st = cfg_float(&r, root, "rms_norm_eps", &c->rms_norm_eps, 1e-6, 0, 1)) != DS_OK) goto done;
    if ((st = cfg_bool(&r, "tie_word_embeddings", &c->tie_word_embeddings, false)) != DS_OK) goto done;
    const char *act = cfg_string(&r, root, "hidden_act");
    if (act && strcmp(act, "silu") != 0) { st = cfg_bad(&r, "hidden_act", "only \"silu\" is supported"); goto done; }
    if ((st = cfg_parse_moe(&r, c)) != DS_OK) goto done;
    if ((st = cfg_parse_rope(&r, c)) != DS_OK) goto done;
    if ((st = cfg_parse_quant(&r, c)) != DS_OK) goto done;
    if (c->bos_token_id >= c->vocab_size) { st = cfg_bad(&r, "bos_token_id", "not below vocab_size"); goto done; }
    if (c->eos_token_id >= c->vocab_size) { st = cfg_bad(&r, "eos_token_id", "not below vocab_size"); goto done; }
done:
    cJSON_Delete(root);
    return st;
}

ds_status ds_config_load(ds_config *c, const char *dir, ds_error *err) {
    char *path = file_join(dir, "config.json");
    if (!path) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    char *text = NULL;
    size_t size = 0;
    ds_status st = file_read_all(path, &text, &size, err);
    if (st == DS_OK) {
        if (strlen(text) != size) st = ds_error_set(err, DS_ERR_CONFIG, "%s: contains a NUL byte", path);
        else st = ds_config_parse(c, text, path, err);
    }
    free(text);
    free(path);
    return st;
}

float ds_config_softmax_scale(const ds_config *c) {
    return (float)(1.0 / sqrt((double)ds_config_qk_head_dim(c))) * rope_softmax_mscale2(&c->rope);
}

static const char *topk_method_name(ds_topk_method m) {
    return m == DS_TOPK_NOAUX_TC ? "noaux_tc" : m == DS_TOPK_GROUP_LIMITED_GREEDY ? "group_limited_greedy" : "greedy";
}

ds_status ds_config_save(const ds_config *c, const char *dir, ds_error *err) {
    bool v3 = c->arch == DS_ARCH_DEEPSEEK_V3;
    cJSON *o = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"));
    cJSON_AddStringToObject(o, "model_type", v3 ? "deepseek_v3" : "deepseek_v2");
#define NUM(key, v) cJSON_AddNumberToObject(o, key, (double)(v))
    NUM("vocab_size", c->vocab_size);
    NUM("hidden_size", c->hidden_size);
    NUM("intermediate_size", c->intermediate_size);
    NUM("moe_intermediate_size", c->moe_intermediate_size);
    NUM("num_hidden_layers", c->num_hidden_layers);
    if (c->num_nextn_predict_layers) NUM("num_nextn_predict_layers", c->num_nextn_predict_layers);
    NUM("num_attention_heads", c->num_attention_heads);
    NUM("num_key_value_heads", c->num_key_value_heads);
    NUM("n_shared_experts", c->n_shared_experts);
    NUM("n_routed_experts", c->n_routed_experts);
    NUM("num_experts_per_tok", c->num_experts_per_tok);
    NUM("n_group", c->n_group);
    NUM("topk_group", c->topk_group);
    NUM("routed_scaling_factor", c->routed_scaling_factor);
    cJSON_AddStringToObject(o, "scoring_func", c->scoring_func == DS_SCORE_SIGMOID ? "sigmoid" : "softmax");
    cJSON_AddStringToObject(o, "topk_method", topk_method_name(c->topk_method));
    cJSON_AddBoolToObject(o, "norm_topk_prob", c->norm_topk_prob);
    NUM("first_k_dense_replace", c->first_k_dense_replace);
    NUM("moe_layer_freq", c->moe_layer_freq);
    if (c->q_lora_rank) NUM("q_lora_rank", c->q_lora_rank);
    else cJSON_AddNullToObject(o, "q_lora_rank");
    NUM("kv_lora_rank", c->kv_lora_rank);
    NUM("qk_nope_head_dim", c->qk_nope_head_dim);
    NUM("qk_rope_head_dim", c->qk_rope_head_dim);
    NUM("v_head_dim", c->v_head_dim);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    NUM("max_position_embeddings", c->max_position_embeddings);
    NUM("rms_norm_eps", c->rms_norm_eps);
    NUM("rope_theta", c->rope.theta);
    if (c->rope.yarn) {
        cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
        cJSON_AddStringToObject(rs, "type", "yarn");
        cJSON_AddNumberToObject(rs, "factor", c->rope.factor);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope.orig_max_pos);
        cJSON_AddNumberToObject(rs, "beta_fast", c->rope.beta_fast);
        cJSON_AddNumberToObject(rs, "beta_slow", c->rope.beta_slow);
        cJSON_AddNumberToObject(rs, "mscale", c->rope.mscale);
        cJSON_AddNumberToObject(rs, "mscale_all_dim", c->rope.mscale_all_dim);
    } else {
        cJSON_AddNullToObject(o, "rope_scaling");
    }
    if (c->bos_token_id >= 0) NUM("bos_token_id", c->bos_token_id);
    if (c->eos_token_id >= 0) NUM("eos_token_id", c->eos_token_id);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_word_embeddings);
    cJSON_AddBoolToObject(o, "attention_bias", false);
    NUM("attention_dropout", 0.0);
    NUM("initializer_range", 0.02);
    cJSON_AddBoolToObject(o, "use_cache", true);
    if (c->fp8) {
        cJSON_AddStringToObject(o, "torch_dtype", "bfloat16");
        cJSON *q = cJSON_AddObjectToObject(o, "quantization_config");
        cJSON_AddStringToObject(q, "activation_scheme", "dynamic");
        cJSON_AddStringToObject(q, "fmt", "e4m3");
        cJSON_AddStringToObject(q, "quant_method", "fp8");
        cJSON *bs = cJSON_AddArrayToObject(q, "weight_block_size");
        cJSON_AddItemToArray(bs, cJSON_CreateNumber(128));
        cJSON_AddItemToArray(bs, cJSON_CreateNumber(128));
    }
#undef NUM
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return ds_error_set(err, DS_ERR_OOM, "out of memory");
    char *path = file_join(dir, "config.json");
    size_t n = strlen(text);
    text[n] = '\n'; // cJSON_Print's buffer has the NUL here; write it as a trailing newline
    ds_status st = path ? file_write_atomic(path, text, n + 1, err) : ds_error_set(err, DS_ERR_OOM, "out of memory");
    free(path);
    free(text);
    return st;
}
