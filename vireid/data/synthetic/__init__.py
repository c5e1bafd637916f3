"""Synthetic visible-infrared re-id data in the official dataset layouts.

Persons are drawn, not sampled from a real dataset: each identity (:func:`sample_identity`) has a body
build, skin, hair, garments with colours, patterns and thermal properties, shoes and a carried object;
each camera (:class:`CameraSpec`) has its own viewpoints, scene, lighting, blur, noise and occluders.
Visible images show colour; infrared images show an intensity derived from thermal properties that are
independent of colour, so matching across modalities must rely on shape, pattern and thermal cues --
the modality gap of the real problem.

::

    from vireid.data.synthetic import generate
    generate("sysu", "data/synth-sysu", ids=100, seed=0)
"""

from vireid.data.synthetic.cameras import VIEWS, CameraSpec, Shot, Track, sample_shot, sample_track
from vireid.data.synthetic.layouts import (
    DATASETS,
    DEFAULT_IMAGES,
    DEFAULT_SIZE,
    GENERATOR_VERSION,
    MARKER_DONE,
    MARKER_INCOMPLETE,
    camera_specs,
    generate,
    identity_of,
    is_current,
    is_synthetic,
)
from vireid.data.synthetic.person import Garment, PersonIdentity, sample_identity
from vireid.data.synthetic.render import person_labels, render_person, render_shot
from vireid.data.synthetic.sysu_shape import (
    SysuShape,
    build_rand_perm_cam,
    sysu_shape,
    sysu_shape_from,
    write_rand_perm_cam,
)

__all__ = [
    "DATASETS",
    "GENERATOR_VERSION",
    "is_current",
    "is_synthetic",
    "DEFAULT_IMAGES",
    "DEFAULT_SIZE",
    "MARKER_DONE",
    "MARKER_INCOMPLETE",
    "VIEWS",
    "CameraSpec",
    "Garment",
    "PersonIdentity",
    "Shot",
    "SysuShape",
    "Track",
    "build_rand_perm_cam",
    "camera_specs",
    "generate",
    "identity_of",
    "person_labels",
    "render_person",
    "render_shot",
    "sample_identity",
    "sample_shot",
    "sample_track",
    "sysu_shape",
    "sysu_shape_from",
    "write_rand_perm_cam",
]
