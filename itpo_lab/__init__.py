"""itpo-lab: the research lab beside the ``itpo_wrap`` library.

What the project uses to make and document its zoo, and what a user of the wrapper does not need:
dataset recipes (:mod:`itpo_lab.data`), base-policy trainer plumbing (:mod:`itpo_lab.offline`), zoo
writers and model cards (:mod:`itpo_lab.zoo_write`, :mod:`itpo_lab.model_card`, :mod:`itpo_lab.cards`), the
programs behind the zoo's provenance records and the commands rendered from them (:mod:`itpo_lab.remake`,
:mod:`itpo_lab.migrate`), the docs' tables (:mod:`itpo_lab.zoo_tables`), the MPPI baseline planner (:mod:`itpo_lab.mppi`) and the paired statistics
of the score experiment (:mod:`itpo_lab.stats`); its command line is ``itpo-lab`` (``python -m itpo_lab``).

The lab imports the library; the library never imports the lab (``tests/test_layers.py``).
"""
