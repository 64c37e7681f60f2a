"""`python -m unist.evaluation.finetune --checkpoint unist-tiny-6 --data my.npz --steps 50 --lora-rank 8 --out
my_release`: fine-tune a release and write the result as a release (see `finetune_release`)."""
import sys

from . import main

sys.exit(main())
