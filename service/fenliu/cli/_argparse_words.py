"""argparse's own words, for fenliu's message catalog.

argparse translates them through the default gettext domain, which the CLI points at fenliu's catalog
(:func:`fenliu.cli.commands.use_language`); listing them here puts them in the catalog when messages are
extracted. These are the words of Python 3.11-3.13's argparse that a user of ``fenliu`` meets.
"""

from fenliu.i18n import N_

WORDS = (
    N_("usage: "),
    N_("positional arguments"),
    N_("options"),
    N_("show this help message and exit"),
    N_("show program's version number and exit"),
    N_("the following arguments are required: %s"),
    N_("unrecognized arguments: %s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("%(prog)s: error: %(message)s\n"),
    N_("expected one argument"),
    N_("argument %(argument_name)s: %(message)s"),
    N_("invalid %(type)s value: %(value)r"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("expected at least one argument"),
    N_("not allowed with argument %s"),
)
