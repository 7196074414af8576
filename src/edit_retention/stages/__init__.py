"""One door per stage: each rule family's logic, called by ``cli`` with the parsed options.

    rule family            module here                  library it drives
    prepare_model          prepare_model.py             models
    prepare_facts          prepare_facts.py             facts/
    generate_paraphrases   generate_paraphrases.py      paraphrase, paraphrase_lm
    build_corpus           build_corpus.py              corpus
    select_intrinsic       select_intrinsic.py          select, evaluate
    layer_stats            layer_stats.py               stats
    train_mend             train_mend.py                editors/mend_train
    apply_edits            apply_edits.py               editors/ (+ regimes)
    build_task_data        build_task_data.py           tasks/
    finetune               finetune.py                  finetune, single
    evaluate_*             evaluate.py                  evaluate, single
    summarize              summarize.py                 summarize, cells
    claims                 claims.py                    claims, elasticity
    figure_*               figure.py                    plots/<figure>.py
    report                 report.py                    report

Each module's ``run(a)`` takes the ``argparse`` namespace of its subcommand. A rule's code
inputs are the package modules its stage module imports (``codeinputs``).
"""
