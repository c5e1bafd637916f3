"""vireid: visible-infrared person re-identification.

Library first, CLI second. The main entry points:

- :mod:`vireid.data` -- dataset readers in their official layouts, a plug-in registry, synthetic data;
- :mod:`vireid.evaluation` -- the field's protocols and metrics (CMC, mAP, mINP);
- :mod:`vireid.models`, :mod:`vireid.losses`, :mod:`vireid.engine` -- training;
- :mod:`vireid.retrieval` -- export, gallery index, search and service.
"""

__version__ = "0.1.0"
