"""Brain figures as matplotlib figures: glass brains, slices, winner-take-all maps."""

from __future__ import annotations

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np


def glass_brain(img: nib.Nifti1Image, title: str = "", threshold: float | None = None,
                vmax: float | None = None) -> plt.Figure:
    """A nilearn glass brain (sagittal, coronal, axial projections) of a statistical map."""
    from nilearn import plotting

    fig = plt.figure(figsize=(8, 3))
    plotting.plot_glass_brain(_finite(img), figure=fig, threshold=threshold, colorbar=True,
                              plot_abs=False, title=title or None, vmax=vmax)
    return fig


def slices(img: nib.Nifti1Image, title: str = "", threshold: float | None = None,
           cut_coords: int | list[float] = 6, bg_img=None) -> plt.Figure:
    """Axial slices of a statistical map over the MNI152 template (or ``bg_img``)."""
    from nilearn import plotting

    fig = plt.figure(figsize=(12, 2.6))
    kwargs = {} if bg_img is None else {"bg_img": bg_img}
    plotting.plot_stat_map(_finite(img), figure=fig, display_mode="z", cut_coords=cut_coords,
                           threshold=threshold, title=title or None, colorbar=True,
                           draw_cross=False, **kwargs)
    return fig


def winner_figure(winner_img: nib.Nifti1Image, names: list[str], title: str = "") -> plt.Figure:
    """Winner-take-all label map (1 + model index, 0 = none) as coloured axial slices."""
    from matplotlib.colors import ListedColormap
    from nilearn import plotting

    colors = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")(np.arange(len(names)))
    fig = plt.figure(figsize=(12, 3))
    plotting.plot_roi(winner_img, figure=fig, display_mode="z", cut_coords=6,
                      cmap=ListedColormap(colors), title=title or None, draw_cross=False,
                      vmin=0.5, vmax=len(names) + 0.5, colorbar=False)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors]
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 6), fontsize=8,
               frameon=False)
    return fig


def _finite(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """Replace NaN (voxels without a value) by 0 so plotting does not fail or mislead."""
    data = np.nan_to_num(np.asarray(img.dataobj, dtype=np.float32), nan=0.0)
    return nib.Nifti1Image(data, img.affine)
