"""What the papers ran on Omniglot, and what they reported: the defaults of omniglot.py.

MAML and first-order MAML follow the MAML paper's code, github.com/cbfinn/maml,
main.py's usage lines:

    5-way:  --meta_batch_size=32 --update_lr=0.4 --num_updates=1 --metatrain_iterations=40000
    20-way: --meta_batch_size=16 --update_lr=0.1 --num_updates=5 --metatrain_iterations=40000

(--update_batch_size=K for K shots, K query drawings per class, Adam of
meta_lr 0.001 outside; first-order MAML is the same run with --stop_grad=True).
Steps at test: the paper's appendix says 3 for 5-way and 5 for 20-way (the
code evaluates after each of 1..10 steps).

Reptile follows its paper's code, github.com/openai/supervised-reptile,
README "Reproducing training runs" (the same flags with and without
--transductive, which only changes how test predictions are batched):

    5-way (1 and 5 shots):  --train-shots 10 --inner-batch 10 --inner-iters 5 --learning-rate 0.001
                            --meta-step 1 --meta-step-final 0 --meta-batch 5 --meta-iters 100000
                            --eval-batch 5 --eval-iters 50
    20-way (1 and 5 shots): --train-shots 10 --inner-batch 20 --inner-iters 10 --learning-rate 0.0005
                            --meta-step 1 --meta-step-final 0 --meta-batch 5 --meta-iters 200000
                            --eval-batch 10 --eval-iters 50

with Adam of betas (0, 0.999) in the inner loop (models.py, DEFAULT_OPTIMIZER),
one optimizer whose moments carry over from task to task (reptile.py resets
only the trainable variables).

iMAML follows its authors' code, github.com/aravindr93/imaml_dev, README,
Omniglot 5-way 1-shot (used here at every way and shot):

    --inner_lr 1e-1 --outer_lr 1e-3 --n_steps 16 --task_mb_size 32 --lam 2.0 --cg_steps 5 --cg_damping 1.0

("meta_steps (at least) 20000"; measure_accuracy.py adapts with 16 steps at
test). Its matrix_evaluator solves ((1 + cg_damping) I + H / (lam + 10)) x = g,
which is IMAML's damped system with mu = (1 + 1)(2 + 10) - 2 = 22 (tinymeta/meta/imaml.py).
Two differences remain: its 16 inner steps are plain SGD followed by one step on
the proximal term, where IMAML takes the proximal term in every step, and it
tests with plain SGD, where this example adapts as it trained.
Meta-SGD has no published Omniglot code here; it keeps this example's earlier
settings.
"""

MAML = {5: dict(meta_batch=32, inner_steps=1, inner_lr=0.4, eval_steps=3, iters=40000),
        20: dict(meta_batch=16, inner_steps=5, inner_lr=0.1, eval_steps=5, iters=40000)}
REPTILE_COMMON = dict(meta_batch=5, inner_optimizer="adam", outer_lr=1.0, meta_step_final=0.0, train_shots=10,
                      eval_steps=50)
REPTILE = {5: dict(REPTILE_COMMON, inner_steps=5, inner_lr=0.001, inner_batch=10, eval_batch=5, iters=100000),
           20: dict(REPTILE_COMMON, inner_steps=10, inner_lr=0.0005, inner_batch=20, eval_batch=10, iters=200000)}
IMAML = dict(meta_batch=32, inner_steps=16, inner_lr=0.1, eval_steps=16, iters=20000, lam=2.0, cg_steps=5, damping=22.0)
EARLIER = {"metasgd": dict(meta_batch=32, inner_steps=1, inner_lr=0.4, eval_steps=3, iters=3000)}
SOURCES = {"maml": "cbfinn/maml main.py usage lines, MAML paper appendix (test steps)",
           "fomaml": "cbfinn/maml main.py usage lines with --stop_grad",
           "reptile": "openai/supervised-reptile README, Omniglot commands",
           "metasgd": "this example's earlier settings (no published Omniglot code used)",
           "imaml": "aravindr93/imaml_dev README, Omniglot 5-way 1-shot command"}


def published_settings(algo, way):
    """The defaults for `algo` at `way` classes (the nearest published way: 5 below 20, else 20)."""
    nearest = 5 if way < 20 else 20
    if algo in ("maml", "fomaml"):
        return dict(MAML[nearest], inner_optimizer="sgd")
    if algo == "reptile":
        return dict(REPTILE[nearest])
    if algo == "imaml":
        return dict(IMAML, inner_optimizer="sgd")
    return dict(EARLIER[algo], inner_optimizer="sgd")


# Test accuracies the papers report on the full Omniglot (percent, 95% CI), (way, shot) -> figure,
# transcribed by hand. MAML: the MAML paper's Table 1 (transductive batch norm). First-order MAML and
# Reptile: the Reptile paper's Omniglot table in its final arXiv version (1803.02999v3; first-order MAML
# as reported by Finn et al., transductive; v1 had other Reptile figures, e.g. 95.32 and 97.97 at 5-way 1-shot).
# Reptile's non-transductive figures ("support-stats" here) predict each query drawing in one batch
# with the support set, so their statistics include that one drawing.
PAPER = {
    ("maml", "transductive"): {(5, 1): "98.7 ± 0.4", (5, 5): "99.9 ± 0.1", (20, 1): "95.8 ± 0.3",
                               (20, 5): "98.9 ± 0.2"},
    ("fomaml", "transductive"): {(5, 1): "98.3 ± 0.5", (5, 5): "99.2 ± 0.2", (20, 1): "89.4 ± 0.5",
                                 (20, 5): "97.9 ± 0.1"},
    ("reptile", "transductive"): {(5, 1): "97.68 ± 0.04", (5, 5): "99.48 ± 0.06", (20, 1): "89.43 ± 0.14",
                                  (20, 5): "97.12 ± 0.32"},
    ("reptile", "support-stats"): {(5, 1): "95.39 ± 0.09", (5, 5): "98.90 ± 0.10", (20, 1): "88.14 ± 0.15",
                                      (20, 5): "96.65 ± 0.33"},
}
