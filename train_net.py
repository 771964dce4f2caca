#!/usr/bin/env python
"""Train or evaluate a dense_assign detector described by a detectron2 LazyConfig file.

    python train_net.py --config-file CONFIG.py [--num-gpus N] [--resume] [--eval-only] \
        [key=value ...]

See ``python train_net.py --help``. The work is done by :mod:`dense_assign.engine`
(``launch_from_args`` -> ``run`` in each process); this file is only the command line.
"""

import sys

from dense_assign.data import DatasetError
from dense_assign.data.checks import short_error
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
    except Exception as e:
        # An image that fails to load during training (changed after the check before training),
        # here, in a data-loader worker or in another process: one line naming the file.
        line = short_error(e)
        if line is None:
            raise
        parser.exit(1, f"{parser.prog}: {line}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
