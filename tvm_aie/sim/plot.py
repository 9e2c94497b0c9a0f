"""The array as a picture: every tile of the device, coloured by how busy its core was in a run,
with the placement drawn on it (which layer each core runs, the cascades between cores and the
stream routes between DMA channels).

Rows are drawn bottom-up as on the device: row 0 the shim (array interface) tiles, then the memory
tiles, then the compute tiles. A compute tile's colour is its core's busy share of the run's
cycles (white: no core); memory and shim tiles the program uses are outlined.
"""

from __future__ import annotations

from ..atomic import save_figure

from ..target import get_device


def _layer_of_tiles(program) -> dict:
    """``(col, row)`` -> layer name, from the program's meta (codegen programs record it)."""
    out = {}
    for layer in program.meta.get("layers", []):
        for t in layer.get("tiles", []):
            out[(t[0], t[1])] = layer["name"]
    return out


def plot_array(program, report, path) -> None:
    """Draw ``program``'s placement on its device, coloured by ``report`` (a SimReport), to a PNG."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    from matplotlib.patches import Rectangle  # pylint: disable=import-outside-toplevel

    dev = get_device(program.device)
    rows = dev.first_compute_row + dev.compute_rows
    cmap = plt.get_cmap("viridis")
    used = {(t.col, t.row): t.kind for t in program.tiles}
    layers = _layer_of_tiles(program)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * dev.columns + 2), 0.5 * rows + 1.6))
    for col in range(dev.columns):
        for row in range(rows):
            kind = "shim" if row == 0 else "memtile" if row < dev.first_compute_row else "compute"
            stats = report.per_tile.get(f"{col},{row}")
            if stats is not None:
                face = cmap(stats["busy"] / report.cycles if report.cycles else 0.0)
            else:
                face = {"shim": "#d9d9d9", "memtile": "#ececec", "compute": "white"}[kind]
            edge, width = ("black", 1.4) if (col, row) in used else ("#b0b0b0", 0.4)
            ax.add_patch(Rectangle((col, row), 0.92, 0.92, facecolor=face, edgecolor=edge,
                                   linewidth=width))
            if (col, row) in layers and dev.columns <= 40:
                ax.text(col + 0.46, row + 0.46, layers[(col, row)].replace("dense", "d"),
                        ha="center", va="center", fontsize=5, color="white")
    for c in program.cascades:
        ax.annotate("", xy=(c.dst[0] + 0.46, c.dst[1] + 0.46),
                    xytext=(c.src[0] + 0.46, c.src[1] + 0.46),
                    arrowprops={"arrowstyle": "->", "color": "orange", "lw": 1.0})
    for r in program.routes:
        for d in r.dsts:
            ax.plot([r.src[0] + 0.46, d[0] + 0.46], [r.src[1] + 0.46, d[1] + 0.46],
                    color="red", alpha=0.25, linewidth=0.6)
    ax.set_xlim(-0.2, dev.columns + 0.2)
    ax.set_ylim(-0.2, rows + 0.2)
    ax.set_aspect("equal")
    ax.set_xlabel("column")
    ax.set_ylabel("row (0: shim, then memory tiles, then compute)")
    ax.set_title(f"{program.name} on {dev.name} ({dev.tag}): {report.tiles_used} cores, "
                 f"{report.cycles:,} cycles, {100 * report.efficiency:.0f}% of peak MACs")
    bar = fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1)), ax=ax,
                       fraction=0.025, pad=0.01)
    bar.set_label("core busy share of the run")
    fig.tight_layout()
    save_figure(fig, path, dpi=130)
    plt.close(fig)
