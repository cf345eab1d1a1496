#!/bin/sh
# make tiny-r1: the R1 recipe end to end, reproducibly from seeds, on 2 CPU cores:
#   problems with verifiable answers and step-by-step traces (deepseek tasks)
#   -> a byte-level BPE trained on them (deepseek tokenizer-train)
#   -> a random DeepSeek-V3-architecture model (MLA, MoE + shared expert, MTP; preset tiny-r1)
#   -> cold-start SFT on the traces (deepseek sft)          => models/tiny-r1-sft
#   -> GRPO with rule-based rewards (deepseek grpo)         => models/tiny-r1
#   -> held-out evaluation of both (scripts/tiny-r1-eval.sh)
# Work files (data, tokenizer, metrics, logs) go to $WORK (default build/tiny-r1).
# STAGES="data tok sft grpo eval" selects stages (default: all).
set -eu
DS=${DS:-build/deepseek}
WORK=${WORK:-build/tiny-r1}
MODELS=${MODELS:-models}
THREADS=${THREADS:-2}
STAGES=${STAGES:-data tok sft grpo eval}
has() { case " $STAGES " in *" $1 "*) return 0 ;; esac; return 1; }
mkdir -p "$WORK" "$MODELS"
t0=$(date +%s)
stamp() { echo "== tiny-r1: $* ($(( $(date +%s) - t0 )) s)"; }

if has data; then
  stamp "problems and traces"
  # SFT traces (train split only): addition and subtraction up to 4 digits, multiplication by
  # one digit up to 3-digit multiplicands (nearly all of that space), countdown with 3 numbers
  "$DS" tasks --task arithmetic --difficulty add:1-4,sub:1-4 --n 38000 --seed 1 --traces -o "$WORK/sft-addsub.jsonl"
  "$DS" tasks --task arithmetic --difficulty mul:1-3x1 --n 8500 --seed 2 --traces -o "$WORK/sft-mul.jsonl"
  "$DS" tasks --task countdown --difficulty n:3 --n 4000 --seed 3 --traces -o "$WORK/sft-countdown.jsonl"
  # GRPO prompts (train split): the SFT difficulties where the SFT model is still unsure
  # (multiplication above all), and difficulties beyond the SFT data (5-digit addition and
  # subtraction, 4-5-digit multiplicands) and countdown, where it has almost no signal
  "$DS" tasks --task arithmetic --difficulty mul:2-3x1,sub:3-4,add:3-4 --n 2000 --seed 4 -o "$WORK/grpo-sft.jsonl"
  "$DS" tasks --task arithmetic --difficulty mul:4-5x1,add:5,sub:5 --n 800 --seed 5 -o "$WORK/grpo-beyond.jsonl"
  "$DS" tasks --task countdown --difficulty n:3 --n 300 --seed 6 -o "$WORK/grpo-countdown.jsonl"
fi

if has tok; then
  stamp "tokenizer"
  "$DS" tokenizer-train --data "$WORK/sft-addsub.jsonl,$WORK/sft-mul.jsonl,$WORK/sft-countdown.jsonl" --vocab 512 -o "$WORK/tokenizer"
  "$DS" init --preset tiny-r1 --tokenizer "$WORK/tokenizer" --seed 1 -o "$WORK/init"
fi

if has sft; then
  stamp "SFT (cold start on traces)"
  "$DS" sft -m "$WORK/init" --data "$WORK/sft-addsub.jsonl" --data "$WORK/sft-mul.jsonl" --data "$WORK/sft-countdown.jsonl" -o "$MODELS/tiny-r1-sft" \
    --epochs 1 --batch 32 --micro-batch 16 --lr 3e-3 --warmup 50 --seed 1 --val-every 200 --save-every 400 --save-dtype bf16 -t "$THREADS"
  cp "$MODELS/tiny-r1-sft/metrics.jsonl" "$WORK/sft-metrics.jsonl"
fi

if has grpo; then
  stamp "GRPO"
  "$DS" grpo -m "$MODELS/tiny-r1-sft" --tasks "$WORK/grpo-sft.jsonl" --tasks "$WORK/grpo-beyond.jsonl" \
    --tasks "$WORK/grpo-countdown.jsonl" -o "$MODELS/tiny-r1" --steps 120 --group 8 --prompts-per-step 16 \
    --lr 3e-4 --beta 0.04 --temp 1.0 --max-new 320 --seed 1 --save-dtype bf16 -t "$THREADS"
  cp "$MODELS/tiny-r1/metrics.jsonl" "$WORK/grpo-metrics.jsonl"
fi

if has eval; then
  stamp "evaluation"
  DS="$DS" WORK="$WORK" MODELS="$MODELS" THREADS="$THREADS" sh scripts/tiny-r1-eval.sh
fi
stamp "done"
