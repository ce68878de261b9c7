"""End-to-end recipes for the shipped chest X-ray modules, designed for a 2-core CPU.

``python -m recipes pediatric-pneumonia --out runs/pediatric-pneumonia`` (or ``chest``) does
everything from the committed split to the installed bundle:

1. samples and the committed patient-level split (``splits/<module>.json``; made once if missing);
2. every image resized once by ``edge.preprocess`` and kept in memory (uint8) (``recipes.data``);
3. the frozen *trunk* of an ImageNet-pretrained backbone (all but its last ``tune_blocks`` blocks;
   the split is the architecture's, ``training.registry``) runs ONCE and its outputs are cached;
4. stage 1: the linear head is trained on the pooled embeddings of the frozen network (seconds);
5. stage 2: the last blocks + head are fine-tuned on the cached feature maps (BatchNorm frozen),
   early stopping on the validation loss, best epoch kept (``recipes.stages``);
6. temperature scaling and the abstain threshold on the validation split;
7. the input check (``training.ood``): Mahalanobis distance of the embedding, threshold on
   validation X-rays, measured on the test X-rays and on out-of-scope images (``recipes.evaluation``);
8. checkpoint -> ONNX bundle (``export.onnx_export.export_bundle``, golden images, parity) ->
   model card (``recipes.card``); evaluation report, confusion matrix, ROC curves and reliability
   diagrams on the test split (``recipes.report``). ``recipes.run`` orchestrates; ``recipes.cli``
   is the command line.

A baseline (``--baseline``) trains the seed project's architecture the same way on the same split
under a stated CPU budget, reports it, and installs nothing.

This package sits above both ``training`` and ``export``: it trains *and* exports.
"""
