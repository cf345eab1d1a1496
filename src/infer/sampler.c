// Token sampler: greedy, or temperature softmax filtered by top-k, top-p and min-p, then one
// draw from the seeded generator. Scratch is allocated once in sampler_init; a call allocates
// nothing. Sorting is avoided where a filter does not need order (plain and min-p sampling), and
// top-k selects with a k-entry heap (O(V log k)) instead of sorting the vocabulary.
#include "infer/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ds_status sampler_init(sampler *s, const sampler_params *p, int vocab, ds_error *err) {
    memset(s, 0, sizeof(*s));
    // Negated comparisons so NaN fails every check.
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return ds_error_set(err, DS_ERR_ARG, "--temp must be a finite number >= 0, got %g", (double)p->temperature);
    if (p->top_k < 0) return ds_error_set(err, DS_ERR_ARG, "--top-k must be >= 0, got %d", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return ds_error_set(err, DS_ERR_ARG, "--top-p must be in (0, 1], got %g", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return ds_error_set(err, DS_ERR_ARG, "--min-p must be in [0, 1], got %g", (double)p->min_p);
    if (vocab <= 0) return ds_error_set(err, DS_ERR_ARG, "sampler: vocabulary size must be > 0, got %d", vocab);
    s->probs = malloc(sizeof(float) * (size_t)vocab);
    s->idx = malloc(sizeof(int) * (size_t)vocab);
    if (!s->probs || !s->idx) {
        sampler_free(s);
        return ds_error_set(err, DS_ERR_OOM, "sampler: cannot allocate scratch for %d tokens", vocab);
    }
    s->p = *p;
    s->vocab = vocab;
    ds_rng_seed(&s->rng, p->seed, 0);
    return DS_OK;
}

void sampler_free(sampler *s) {
    free(s->probs);
    free(s->idx);
    s->probs = NULL;
    s->idx = NULL;
}

// Lowest id wins ties, so greedy decoding is reproducible across kernels' rounding.
static int sampler_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

// ---- ordering by (probability desc, id asc), on the idx array with a heap ---------------
static inline int sampler_better(const float *p, int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); }

// Min-heap on "better": the root is the worst candidate.
static void sampler_sift_down(int *h, int n, int i, const float *p) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && sampler_better(p, h[w], h[l])) w = l;
        if (r < n && sampler_better(p, h[w], h[r])) w = r;
        if (w == i) return;
        int t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

static void sampler_heapify(int *h, int n, const float *p) {
    for (int i = n / 2 - 1; i >= 0; i--) sampler_sift_down(h, n, i, p);
}

// Heap sort of a heapified array: moving the worst to the back each step leaves it best-first.
static void sampler_heap_sort(int *h, int n, const float *p) {
    for (int end = n - 1; end > 0; end--) {
        int t = h[0]; h[0] = h[end]; h[end] = t;
        sampler_sift_down(h, end, 0, p);
    }
}

// idx[0, k) = the k most probable ids, best first. O(V log k).
static void sampler_select_topk(int *idx, const float *p, int vocab, int k) {
    for (int i = 0; i < k; i++) idx[i] = i;
    sampler_heapify(idx, k, p);
    for (int i = k; i < vocab; i++)
        if (sampler_better(p, i, idx[0])) {
            idx[0] = i;
            sampler_sift_down(idx, k, 0, p);
        }
    sampler_heap_sort(idx, k, p);
}

// probs = softmax(logits / T); returns the largest probability.
static float sampler_softmax(float *probs, const float *logits, int n, float temperature) {
    float inv_t = 1.0f / temperature, mx = logits[0] * inv_t;
    for (int i = 1; i < n; i++) mx = fmaxf(mx, logits[i] * inv_t);
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        probs[i] = expf(logits[i] * inv_t - mx);
        sum += probs[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) probs[i] *= inv;
    return inv; // exp(0) / sum: the max entry's probability
}

// Draws from the candidates idx[0, n) (or every id when idx is NULL) in proportion to p.
static int sampler_draw(ds_rng *rng, const float *p, const int *idx, int n) {
    float mass = 0.0f;
    for (int i = 0; i < n; i++) mass += p[idx ? idx[i] : i];
    float u = ds_rng_uniform(rng) * mass, cum = 0.0f;
    int last = 0;
    for (int i = 0; i < n; i++) {
        int id = idx ? idx[i] : i;
        if (p[id] <= 0.0f) continue;
        cum += p[id];
        last = id;
        if (u < cum) return id;
    }
    return last; // rounding left u just above the total
}

int sampler_sample(sampler *s, const float *logits) {
    const sampler_params *sp = &s->p;
    int V = s->vocab;
    if (sp->temperature == 0.0f) return sampler_argmax(logits, V);
    float *p = s->probs;
    int *idx = s->idx;
    float pmax = sampler_softmax(p, logits, V, sp->temperature);
    int n = V, have_list = 0; // have_list: idx[0, n) holds the candidates, best first

    if (sp->top_k > 0 && sp->top_k < V) {
        n = sp->top_k;
        sampler_select_topk(idx, p, V, n);
        have_list = 1;
    }
    if (sp->top_p < 1.0f) {
        if (!have_list) {
            // Ids below (1 - top_p) / (V - 1) cannot be in the nucleus: the most probable id is
            // kept (cut <= p_max), so at most V - 1 are dropped and together they hold less than
            // 1 - top_p. Dropping them first keeps the sort short.
            float cut = V > 1 ? (1.0f - sp->top_p) / (float)(V - 1) : 0.0f;
            if (cut > pmax) cut = pmax;
            n = 0;
            for (int i = 0; i < V; i++)
                if (p[i] >= cut) idx[n++] = i;
            sampler_heapify(idx, n, p);
            sampler_heap_sort(idx, n, p);
            have_list = 1;
        }
        float mass = 0.0f;
        for (int i = 0; i < n; i++) mass += p[idx[i]];
        float need = sp->top_p * mass, cum = 0.0f;
        for (int i = 0; i < n; i++) {
            cum += p[idx[i]];
            if (cum >= need) { n = i + 1; break; }
        }
    }
    if (sp->min_p > 0.0f) {
        // Renormalising never changes p / p_max, and the most probable id always survives the
        // earlier filters, so the threshold uses the full-softmax maximum.
        float thr = sp->min_p * pmax;
        int m = 0;
        if (have_list) {
            for (int i = 0; i < n; i++)
                if (p[idx[i]] >= thr) idx[m++] = idx[i];
        } else {
            for (int i = 0; i < V; i++)
                if (p[i] >= thr) idx[m++] = i;
            have_list = 1;
        }
        n = m > 0 ? m : 1; // unreachable in exact arithmetic (p_max >= thr); guard rounding
        if (m == 0) idx[0] = sampler_argmax(p, V);
    }
    return sampler_draw(&s->rng, p, have_list ? idx : NULL, n);
}
