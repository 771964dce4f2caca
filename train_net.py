#!/usr/bin/env python
"""Train or evaluate a dense_assign detector described by a detectron2 LazyConfig file.

    python train_net.py --config-file CONFIG.py [--num-gpus N] [--resume] [--eval-only] \
        [key=value ...]

See ``python train_net.py --help``. The work is done by :mod:`dense_assign.engine`
(``launch_cli`` -> ``launch_from_args`` -> ``run`` in each process); this file is only the
command line.
"""

import sys

from dense_assign.engine import build_argument_parser, launch_cli


def main(argv=None) -> None:
    parser = build_argument_parser()
    # a bad config, bad data or an image that fails to load: one line naming it (launch_cli)
    launch_cli(parser, parser.parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
