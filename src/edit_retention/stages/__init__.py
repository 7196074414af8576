"""One door per stage: ``stages/<rule family>.py`` holds a rule family's logic as ``run(a)``
(``a``: the parsed options of its subcommand; ``cli.STAGES`` maps subcommands here). The
rule family -> module -> library map is in README.md (Layout). A rule's code inputs are the
package modules its stage module imports, transitively (``codeinputs``).
"""
