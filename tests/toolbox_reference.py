"""The MATLAB toolbox's reference values (DLPan-Toolbox a34f884, run in GNU Octave 7.3).

Copied from the project's evaluation protocol (the specs folder beside the repository);
they were produced by running the toolbox, independently of this code.
"""

from __future__ import annotations

# Reduced resolution. Columns: Q2n, Q_avg, SAM, ERGAS, SCC (cut 21), then Q2n, SAM, ERGAS
# without the cut. Keys: (scene, toolbox method name).
RR_REFERENCE = {
    ("wv3_cdif", "EXP"): (0.714218228198, 0.719626815013, 6.15824800861, 8.62899500372, 0.752437655968, 0.638328489057, 6.19756306855, 8.49014597832),
    ("wv3_cdif", "GSA"): (0.890726326401, 0.895696504055, 5.53699108854, 5.12433611246, 0.924992428807, 0.843176335292, 5.56755685468, 5.07670851446),
    ("wv3_cdif", "BT_H"): (0.899382516842, 0.904317787867, 5.00530750231, 4.94158292183, 0.937914867873, 0.863315541809, 5.00283638517, 4.88157194296),
    ("wv3_cdif", "MTF_GLP_HPM"): (0.899399498467, 0.904503406575, 5.21314112597, 4.86393486646, 0.937549891141, 0.842457836039, 5.26001099213, 5.31232683826),
    ("wv3_cdif", "MTF_GLP_FS"): (0.894440653661, 0.898667874937, 5.494128553, 5.0584459969, 0.925807977537, 0.84701299077, 5.53108133388, 5.01614865153),
    ("wv3_cdif", "AWLP"): (0.892983675901, 0.89433338092, 5.72603089963, 5.15965643392, 0.922739338038, 0.81657291883, 5.79140769338, 5.18162134992),
    ("pleiades_cdif", "EXP"): (0.76826564019, 0.754657465209, 4.71798219285, 5.93809776518, 0.764696414146, 0.776451379434, 4.66593716475, 5.73600279429),
    ("pleiades_cdif", "GSA"): (0.976035534663, 0.971745805477, 3.15941983066, 2.28672232304, 0.959568849564, 0.976313589355, 3.1192377454, 2.20735108716),
    ("pleiades_cdif", "BT_H"): (0.979220247981, 0.976906739427, 2.87256131142, 2.12562139595, 0.971520826592, 0.979251855995, 2.86781321669, 2.07692710467),
    ("pleiades_cdif", "MTF_GLP_HPM"): (0.979097960287, 0.977155922494, 2.70568795043, 2.13757677427, 0.9711195422, 0.979196710956, 2.69578037583, 2.08365655301),
    ("pleiades_cdif", "MTF_GLP_FS"): (0.976202021462, 0.97197093072, 3.12596648148, 2.28693887851, 0.959434695454, 0.976475842714, 3.08567153692, 2.20663504045),
    ("pleiades_cdif", "AWLP"): (0.970345858066, 0.962358423018, 3.34172107539, 2.69033501136, 0.948039435939, 0.968098411965, 3.33180684206, 2.65673443598),
}
RR_CUT_KEYS = ("Q2n", "Q_avg", "SAM", "ERGAS", "SCC")
RR_NOCUT_KEYS = ("Q2n", "SAM", "ERGAS")
# scene -> (DN scale, toolbox sensor string)
RR_SCENES = {"wv3_cdif": (2047.0, "WV3"), "pleiades_cdif": (1023.0, "Pleiades")}

# Full resolution: scene -> (MS key, sensor, {method: (D_lambda_K, D_S, HQNR, D_lambda, QNR)}).
FR_REFERENCE = {
    "wv3_zpnn_example": (
        "I_MS_LR",
        "WV3",
        {
            "EXP": (0.0794424940773, 0.276730415158, 0.665811245132, 0.0, 0.723269584842),
            "GSA": (0.172627617497, 0.104439602612, 0.740961939663, 0.114277663477, 0.793217847672),
        },
    ),
    "ikonos_pnn": (
        "I_MS",
        "IKONOS",
        {
            "EXP": (0.0547457551932, 0.116599063147, 0.835038485427, 0.0, 0.883400936853),
            "GSA": (0.0842683200633, 0.169789429136, 0.760250120758, 0.153299494439, 0.702939710073),
        },
    ),
}
FR_KEYS = ("D_lambda_K", "D_S", "HQNR", "D_lambda", "QNR")


def worst_relative(got: dict, keys: tuple[str, ...], want: tuple[float, ...]) -> tuple[float, str]:
    """Largest |got/want - 1| over ``keys`` (absolute difference where the reference is 0)."""
    worst, at = 0.0, ""
    for key, ref in zip(keys, want):
        rel = abs(got[key]) if ref == 0.0 else abs(got[key] / ref - 1.0)
        if rel >= worst:
            worst, at = rel, key
    return worst, at
