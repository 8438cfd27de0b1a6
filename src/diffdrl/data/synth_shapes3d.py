"""SynthShapes3D: a download-free, ray-cast stand-in for Shapes3D (Burgess & Kim, 2018).

Scene, in world units with y up: a floor plane y = 0 meets a back wall z = WALL_Z in a
horizontal line behind an object standing on the floor at the origin. A pinhole camera orbits
the object at a fixed radius and height, looking slightly down at it; its yaw is the
orientation factor, so the floor/wall line shifts and tilts across the image while the object
stays centred. A directional light fixed in the world gives Lambert shading (ambient + diffuse)
and a cast shadow: each floor/wall hit sends a shadow ray through the same object intersection
code. Objects are analytic: a cube (slab method in its own frame, turned 45 degrees), a capped
vertical cylinder, a sphere and a capsule (tube + two hemispheres), all scaled by the scale
factor. The background is a little darker than the object so that an object of the floor's or
wall's hue still stands out.

Colour enters linearly, pixel = sum over surfaces (floor, wall, object) of coverage x shading x
hue, and the coverage-shading weights depend only on (scale, shape, orientation): 480
geometries. Each is ray cast once per device, with ``supersample``^2 rays per pixel, and cached
(480 x H x W x 3 float32: 24 MB at 64 x 64, 94 MB at 128); hues are applied per image.

Deviations from the real Shapes3D: the camera orbits instead of the room rotating around a
fixed camera, the scene is an infinite floor and a single wall, and colours are pure HSV hues.
"""

from __future__ import annotations

import colorsys
import threading

import numpy as np
import torch

from diffdrl.data.ground_truth import GroundTruthDataset

HUES = np.arange(10) / 10
SCALES = np.linspace(0.75, 1.25, 8)
SHAPES = ("cube", "cylinder", "sphere", "capsule")
ORIENTATIONS = np.linspace(-30.0, 30.0, 15)  # camera yaw, degrees

WALL_Z = -1.8
CAMERA_RADIUS, CAMERA_HEIGHT, LOOK_AT_HEIGHT = 6.0, 4.5, 0.9
TAN_HALF_FOV = np.tan(np.radians(20.0))
LIGHT = np.array([-0.45, 1.0, 0.55]) / np.linalg.norm([-0.45, 1.0, 0.55])  # towards the light
AMBIENT, DIFFUSE = 0.45, 0.55
BACKGROUND_ALBEDO = 0.85
CUBE_YAW = np.radians(45.0)
EPS = 1e-4
INF = float("inf")


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Written out rather than a reduction so every element is computed the same way on any batch.
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _on_axis(y: torch.Tensor) -> torch.Tensor:
    """Points (0, y, 0) on the object's vertical axis, (U, 1) -> (U, 1, 3)."""
    return torch.nn.functional.pad(y.unsqueeze(-1), (1, 1))


def _nearest(*hits: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The closest of several (t, normal) hits of the same rays."""
    t, n = hits[0]
    for t_other, n_other in hits[1:]:
        closer = t_other < t
        t, n = torch.where(closer, t_other, t), torch.where(closer.unsqueeze(-1), n_other, n)
    return t, n


# Each intersection takes ray origins o and unit directions d (..., 3) and per-object sizes
# (U, 1); it returns the entry distance t (inf on a miss) and the unit normal there. Objects
# stand on the floor, so no ray ever enters through a flat base and bases are not tested.


def _sphere(o, d, centre_y, radius):
    oc = o - _on_axis(centre_y)
    b = _dot(oc, d)
    disc = b * b - _dot(oc, oc) + radius * radius
    t = -b - disc.clamp(min=0).sqrt()
    t = torch.where((disc > 0) & (t > EPS), t, INF)
    return t, (oc + torch.where(t.isinf(), 0, t).unsqueeze(-1) * d) / radius.unsqueeze(-1)


def _tube(o, d, radius, y_low, y_high):
    """Open vertical cylinder side around the y axis between two heights."""
    a = d[..., 0] ** 2 + d[..., 2] ** 2
    b = o[..., 0] * d[..., 0] + o[..., 2] * d[..., 2]
    disc = b * b - a * (o[..., 0] ** 2 + o[..., 2] ** 2 - radius * radius)
    t = (-b - disc.clamp(min=0).sqrt()) / a.clamp(min=1e-12)
    y = o[..., 1] + t * d[..., 1]
    t = torch.where((disc > 0) & (t > EPS) & (y >= y_low) & (y <= y_high), t, INF)
    p = o + torch.where(t.isinf(), 0, t).unsqueeze(-1) * d
    return t, torch.stack([p[..., 0], torch.zeros_like(t), p[..., 2]], -1) / radius.unsqueeze(-1)


def _top_cap(o, d, radius, height):
    """Horizontal disc at ``height``, hit from above."""
    t = (height - o[..., 1]) / torch.where(d[..., 1] < 0, d[..., 1], -1.0)
    x, z = o[..., 0] + t * d[..., 0], o[..., 2] + t * d[..., 2]
    t = torch.where((d[..., 1] < 0) & (t > EPS) & (x * x + z * z <= radius * radius), t, INF)
    return t, torch.tensor([0.0, 1.0, 0.0], device=d.device).expand_as(d)


def _turn(v: torch.Tensor, angle: float) -> torch.Tensor:
    """Vectors (..., 3) rotated by ``angle`` radians about the y axis."""
    c, s = float(np.cos(angle)), float(np.sin(angle))
    return torch.stack([c * v[..., 0] + s * v[..., 2], v[..., 1], c * v[..., 2] - s * v[..., 0]], -1)


def _box(o, d, half):
    """Cube |x|, |z| <= half, 0 <= y <= 2 half, turned CUBE_YAW about y (slab method in its frame).

    The turn puts an edge, not a face, towards the camera, so that even at 32 x 32 the cube's
    silhouette differs from the cylinder's.
    """
    o, d = _turn(o, -CUBE_YAW), _turn(d, -CUBE_YAW)
    low = torch.stack([-half, torch.zeros_like(half), -half], -1)
    high = torch.stack([half, 2 * half, half], -1)
    inv = 1.0 / torch.where(d == 0, 1e-12, d)
    t1, t2 = (low - o) * inv, (high - o) * inv
    t_near, axis = torch.minimum(t1, t2).max(-1)
    t_far = torch.maximum(t1, t2).min(-1).values
    t = torch.where((t_near <= t_far) & (t_near > EPS), t_near, INF)
    normal = -torch.sign(d) * torch.nn.functional.one_hot(axis, 3).to(d.dtype)
    return t, _turn(normal, CUBE_YAW)


def _hit_object(o, d, shape: int, scale):
    """Intersect rays with one kind of object at per-sample scales (U, 1)."""
    if SHAPES[shape] == "cube":
        return _box(o, d, 0.8 * scale)
    if SHAPES[shape] == "cylinder":
        radius, height = 0.95 * scale, 1.25 * scale
        return _nearest(_tube(o, d, radius, 0.0, height), _top_cap(o, d, radius, height))
    if SHAPES[shape] == "sphere":
        return _sphere(o, d, scale, scale)
    radius, height = 0.6 * scale, 2.3 * scale  # capsule
    return _nearest(
        _tube(o, d, radius, radius, height - radius),
        _sphere(o, d, radius, radius),
        _sphere(o, d, height - radius, radius),
    )


def _hit_objects(o, d, shapes, scale):
    """Dispatch rays, origins (U, 1 or P, 3), to the intersection of each sample's shape (U,)."""
    t = torch.full(d.shape[:-1], INF, device=d.device)
    normal = torch.zeros_like(d)
    for shape in range(len(SHAPES)):
        chosen = shapes == shape
        if chosen.any():
            t[chosen], normal[chosen] = _hit_object(o[chosen], d[chosen], shape, scale[chosen])
    return t, normal


def _camera_frames() -> tuple[np.ndarray, np.ndarray]:
    """Camera position (15, 3) and basis rows (forward, right, up) (15, 3, 3), float64."""
    yaw = np.radians(ORIENTATIONS)
    eye = np.stack(
        [CAMERA_RADIUS * np.sin(yaw), np.full_like(yaw, CAMERA_HEIGHT), CAMERA_RADIUS * np.cos(yaw)], -1
    )
    forward = np.array([0.0, LOOK_AT_HEIGHT, 0.0]) - eye
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    return eye, np.stack([forward, right, np.cross(right, forward)], 1)


class SynthShapes3D(GroundTruthDataset):
    """Procedural Shapes3D: same factors, sizes and order, rendered on demand (see module doc).

    ``render`` works on any device and is bit-for-bit deterministic: the same codes give the
    same pixels whatever else is in the batch.

    Args:
        resolution: image height and width in pixels (at least 8).
        supersample: rays per pixel along each axis, averaged for anti-aliasing (at least 1).
    """

    factor_names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    factor_sizes = (10, 10, 10, 8, 4, 15)
    renders_on_device = True  # ``render(codes, device)``: the trainer renders batches on its GPU
    chunk_size = 256  # images per render call in ``images_for``, bounding memory

    def __init__(self, resolution: int = 64, supersample: int = 2):
        for arg, value, low in (("resolution", resolution, 8), ("supersample", supersample, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{arg} must be an int, got {value!r}")
            if value < low:
                raise ValueError(f"{arg} must be at least {low}, got {value}")
        self.resolution, self.supersample = int(resolution), int(supersample)
        eye, basis = _camera_frames()
        self._eye = torch.tensor(eye, dtype=torch.float32)
        self._basis = torch.tensor(basis, dtype=torch.float32)
        self._hue_rgb = torch.tensor([colorsys.hsv_to_rgb(h, 1.0, 1.0) for h in HUES], dtype=torch.float32)
        self._weights: dict[torch.device, torch.Tensor] = {}  # per device: (480, H, W, 3)
        self._ready: dict[torch.device, torch.Tensor] = {}  # per device, kept on the CPU: (480,) cast yet
        self._cache_lock = threading.Lock()  # training renders in a prefetch thread and evaluates in another

    def images_for(self, codes: np.ndarray) -> np.ndarray:
        codes = torch.from_numpy(self.space.check_codes(codes))
        chunks = range(0, max(len(codes), 1), self.chunk_size)
        return np.concatenate([self.render(codes[i : i + self.chunk_size]).numpy() for i in chunks])

    def render(self, codes: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """Images uint8 (B, H, W, 3) of factor codes int64 (B, 6), on ``device`` (default: the codes').

        Codes on the CPU rendered on a GPU (the trainer's path) are checked and looked up in the
        cache on the CPU, so the render queues GPU work without waiting for it.
        """
        if codes.ndim != 2 or codes.shape[1] != self.num_factors:
            raise ValueError(f"codes must have shape (B, {self.num_factors}), got {tuple(codes.shape)}")
        if codes.dtype != torch.int64:
            raise TypeError(f"codes must be int64, got {codes.dtype}")
        sizes = torch.tensor(self.factor_sizes, device=codes.device)
        if ((codes < 0) | (codes >= sizes)).any():
            raise ValueError(f"codes out of range for factor sizes {self.factor_sizes}")
        # normalised ("cuda" -> "cuda:0"), so it keys one cache
        device = codes.device if device is None else torch.empty(0, device=device).device
        scale, shape, orientation = codes[:, 3:].unbind(1)
        # Row-major over (scale, shape, orientation), like the codes.
        geometry = (scale * len(SHAPES) + shape) * len(ORIENTATIONS) + orientation
        weights = self._surface_weights(geometry, device)  # (B, H, W, 3 surfaces)
        hue_rgb = self._hue_rgb.to(device, non_blocking=True)
        colour = hue_rgb[codes[:, :3].to(device, non_blocking=True)][:, None, None]  # (B, 1, 1, 3, 3 rgb)
        image = sum(weights[..., s, None] * colour[..., s, :] for s in range(3))
        return image.mul(255).round().clamp(0, 255).to(torch.uint8)

    def _surface_weights(self, geometry: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Cached shading weights of geometries (B,); casts the missing ones in bounded chunks."""
        with self._cache_lock:
            return self._cached_weights(geometry, device)

    def _cached_weights(self, geometry: torch.Tensor, device: torch.device) -> torch.Tensor:
        if device not in self._weights:
            count = len(SCALES) * len(SHAPES) * len(ORIENTATIONS)
            self._weights[device] = torch.zeros(count, self.resolution, self.resolution, 3, device=device)
            self._ready[device] = torch.zeros(count, dtype=torch.bool)  # on the CPU: no device sync
        weights, ready = self._weights[device], self._ready[device]
        known = geometry.cpu()
        missing = torch.unique(known[~ready[known]])
        per_chunk = max(1, 2**19 // (self.resolution * self.supersample) ** 2)
        for chunk in missing.split(per_chunk):
            weights[chunk.to(device)] = self._cast(chunk.to(device))
            ready[chunk] = True
        return weights[geometry.to(device, non_blocking=True)]

    def _cast(self, geometry: torch.Tensor) -> torch.Tensor:
        """Ray cast shading weights (U, H, W, 3) for (floor, wall, object) of geometries (U,)."""
        device = geometry.device
        orientation = geometry % len(ORIENTATIONS)
        shape = geometry // len(ORIENTATIONS) % len(SHAPES)
        scale_index = geometry // (len(ORIENTATIONS) * len(SHAPES))
        scale = torch.tensor(SCALES, dtype=torch.float32, device=device)[scale_index].unsqueeze(-1)  # (U, 1)
        light = torch.tensor(LIGHT, dtype=torch.float32, device=device)

        n = self.resolution * self.supersample
        grid = ((torch.arange(n, device=device) + 0.5) / n * 2 - 1) * float(TAN_HALF_FOV)
        forward, right, up = self._basis.to(device)[orientation].unbind(1)  # (U, 3) each
        d = (
            forward[:, None, None]
            + grid[None, None, :, None] * right[:, None, None]
            - grid[None, :, None, None] * up[:, None, None]
        ).flatten(1, 2)  # (U, P, 3), rows top down
        d = d / _dot(d, d).sqrt().unsqueeze(-1)
        o = self._eye.to(device)[orientation].unsqueeze(1)  # (U, 1, 3)

        t_object, normal = _hit_objects(o, d, shape, scale)
        t_floor = torch.where(d[..., 1] < 0, -o[..., 1] / d[..., 1], INF)
        t_wall = torch.where(d[..., 2] < 0, (WALL_Z - o[..., 2]) / d[..., 2], INF)
        on_floor = t_floor < t_wall
        t_back = torch.minimum(t_floor, t_wall)
        hit = o + t_back.unsqueeze(-1) * d
        lit = _hit_objects(hit, light.expand_as(hit), shape, scale)[0].isinf()
        facing_light = torch.where(on_floor, float(LIGHT[1]), float(LIGHT[2]))  # normals +y, +z
        shade_back = BACKGROUND_ALBEDO * (AMBIENT + DIFFUSE * facing_light * lit)
        shade_object = AMBIENT + DIFFUSE * _dot(normal, light).clamp(min=0)

        on_object = t_object < t_back
        w = torch.stack(
            [
                torch.where(~on_object & on_floor, shade_back, 0.0),
                torch.where(~on_object & ~on_floor, shade_back, 0.0),
                torch.where(on_object, shade_object, 0.0),
            ],
            -1,
        ).unflatten(1, (self.resolution, self.supersample, self.resolution, self.supersample))
        total = w[:, :, 0, :, 0]
        for i, j in np.ndindex(self.supersample, self.supersample):  # explicit order: batch-independent
            if i or j:
                total = total + w[:, :, i, :, j]
        return total / self.supersample**2
