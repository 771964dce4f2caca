#!/usr/bin/env python
"""Train or evaluate a dense_assign detector described by a detectron2 LazyConfig file.

    python train_net.py --config-file CONFIG.py [--num-gpus N] [--resume] [--eval-only] \
        [key=value ...]

See ``python train_net.py --help``. The work is done by :mod:`dense_assign.engine`
(``launch_from_args`` -> ``run`` in each process); this file is only the command line.
"""

import sys

from dense_assign.data import DatasetError
from dense_assign.engine import ConfigError, build_argument_parser, launch_from_args


def main(argv=None) -> None:
    parser = build_argument_parser()
    args = parser.parse_args(argv)
    try:
        launch_from_args(args)
    except ConfigError as e:
        # A bad config file or override: one clear line instead of a traceback.
        parser.error(str(e))
    except DatasetError as e:
        # Data that cannot be trained on (found before training starts): the message names it.
        parser.exit(2, f"{parser.prog}: dataset error: {e}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
