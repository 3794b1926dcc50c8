"""Where photo bytes live: a local directory (the default) or an S3-compatible bucket.

Both stores take the same calls, so the photo pipeline (upload, variant worker, serving) does not
know which one it talks to. The S3 store uses boto3, AWS's own SDK, which works against any
S3-compatible server (MinIO, Ceph, R2, moto in the tests). boto3 is blocking; its calls run in
worker threads (one short request each; its connection pool is thread-safe), which keeps one
well-kept client instead of an async wrapper pinned to exact botocore releases.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import posixpath
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image, ImageOps, UnidentifiedImageError

from staybook.kernel.errors import InvalidInput, NotFound, PayloadTooLarge, UnsupportedMediaType
from staybook.kernel.settings import CatalogSettings

# Variant keys embed the photo id, so a URL never changes content: cache it for a year.
IMMUTABLE = "public, max-age=31536000, immutable"
PUBLIC_MEDIA_PREFIX = "photos/"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# photos/<property id>/<photo id>/<variant name>.<extension>: the only keys the media route serves.
_VARIANT_KEY = re.compile(rf"photos/{_UUID}/{_UUID}/[a-z][a-z0-9_]*\.(?:jpg|png|webp)")


def published_variant_key(key: str) -> str:
    """`key` when it names a published variant, else NotFound; decided on the decoded key before any
    file or bucket is touched. Dot segments (however they were encoded), NUL bytes, backslashes,
    absolute paths and every key outside photos/ (the originals, with their EXIF) are refused."""
    if "\x00" in key or "\\" in key or posixpath.normpath(key) != key or not _VARIANT_KEY.fullmatch(key):
        raise NotFound("No media at this path")
    return key


class MediaStore(Protocol):
    kind: str

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...

    async def download_url(self, key: str) -> str | None:
        """A URL where clients fetch the object directly (presigned), or None when the API serves it."""
        ...

    async def ping(self) -> None:
        """Raises when the store cannot take writes (`staybook check`)."""
        ...

    async def close(self) -> None: ...


class LocalMediaStore:
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str, *, within: str = "") -> Path:
        """The file of `key`, which must lie inside `within` (a folder of the root) once resolved."""
        if "\x00" in key:
            raise NotFound("No media at this path")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root / within):
            raise NotFound("No media at this path")
        return path

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        def write() -> None:
            path = self.path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(path.suffix + ".part")
            partial.write_bytes(data)
            partial.replace(path)  # readers never see a half-written file

        await asyncio.to_thread(write)

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except FileNotFoundError as error:
            raise NotFound(f"No media {key}") from error

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self.path(key).unlink)

    async def download_url(self, key: str) -> str | None:
        return None

    async def ping(self) -> None:
        def writable() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".staybook-check"
            probe.write_bytes(b"")
            probe.unlink()

        await asyncio.to_thread(writable)

    async def close(self) -> None:
        return None


class S3MediaStore:
    """Objects in one bucket of an S3-compatible server; keys are the same as the local store's paths.

    Originals stay private like every object (no ACLs are set): clients reach variants through
    `s3_public_base_url` (a CDN or a bucket policy that exposes `photos/`) or a presigned URL.
    """

    kind = "s3"

    def __init__(self, settings: CatalogSettings) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as error:  # the optional extra is missing: say which one
            raise RuntimeError("S3 photo storage needs boto3: pip install 'staybook[s3]'") from error
        self.bucket = settings.s3_bucket
        self.presign_seconds = settings.s3_presign_seconds
        secret = settings.s3_secret_access_key
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
            config=Config(
                s3={"addressing_style": settings.s3_addressing_style},
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=5,
                read_timeout=30,
                max_pool_connections=32,
            ),
        )

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        extra = {"CacheControl": IMMUTABLE} if key.startswith(PUBLIC_MEDIA_PREFIX) else {}
        # One PUT is atomic in S3: readers see the old object, none, or all of the new one.
        await asyncio.to_thread(
            self.client.put_object, Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, **extra
        )

    async def get(self, key: str) -> bytes:
        def read() -> bytes:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except self.client.exceptions.NoSuchKey as error:
                raise NotFound(f"No media {key}") from error
            with contextlib.closing(response["Body"]) as body:
                return body.read()

        return await asyncio.to_thread(read)

    async def delete(self, key: str) -> None:
        # DeleteObject succeeds for a key that does not exist, like the local store's delete.
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=key)

    async def download_url(self, key: str) -> str | None:
        # Signing is local computation (no request), so no thread hand-off is needed.
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.presign_seconds
        )

    async def ping(self) -> None:
        # HeadBucket: the bucket exists and these credentials may use it (staybook does not create it).
        await asyncio.to_thread(self.client.head_bucket, Bucket=self.bucket)

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)


def media_store(settings: CatalogSettings) -> MediaStore:
    """The store the settings choose: S3 when a bucket is set, the local media directory otherwise."""
    if settings.s3_bucket:
        return S3MediaStore(settings)
    return LocalMediaStore(settings.media_dir)


def media_url(settings: CatalogSettings, key: str) -> str:
    """Where clients fetch a variant: the public S3 base (CDN) when set, else the API's media route."""
    base = settings.s3_public_base_url if settings.s3_bucket and settings.s3_public_base_url else None
    return f"{(base or settings.media_base_url).rstrip('/')}/{key}"


# ------------------------------------------------------------------ photo processing (Pillow)


PHOTO_FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"), "WEBP": ("image/webp", "webp")}
# Decoded size limit: a 40 MP photo is already larger than any listing needs; bigger "images"
# that compress to a few KB are decompression bombs meant to exhaust the worker's memory.
MAX_PHOTO_PIXELS = 40_000_000
# name, longest side in pixels, Pillow format
PHOTO_VARIANTS = (("thumb", 320, "JPEG"), ("thumb_webp", 320, "WEBP"), ("large_webp", 1600, "WEBP"))


@dataclass(frozen=True)
class InspectedImage:
    format: str
    content_type: str
    extension: str
    width: int
    height: int


def _file_problem(error_type, detail: str):
    """A 413/415 problem that still names the field, like validation errors do."""
    return error_type(detail, errors=[{"field": "body.file", "message": detail}])


def inspect_image(data: bytes, *, max_bytes: int, max_pixels: int = MAX_PHOTO_PIXELS) -> InspectedImage:
    """Decides from the bytes (never the file name or the declared type) whether this is a photo we take."""
    if len(data) > max_bytes:
        raise _file_problem(PayloadTooLarge, f"Photos may be at most {max_bytes} bytes")
    if not data:
        raise InvalidInput("The file is empty", field="body.file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image_format, (width, height) = image.format, image.size
                if width * height > max_pixels:
                    raise _file_problem(
                        PayloadTooLarge, f"The image is {width}x{height}; at most {max_pixels} pixels are accepted"
                    )
                image.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise _file_problem(PayloadTooLarge, "The image is too large when decoded") from error
    except (UnidentifiedImageError, SyntaxError, OSError, ValueError) as error:
        raise InvalidInput("The file is not a readable JPEG, PNG or WebP image", field="body.file") from error
    if image_format not in PHOTO_FORMATS:
        raise _file_problem(UnsupportedMediaType, f"{image_format} images are not accepted; send JPEG, PNG or WebP")
    content_type, extension = PHOTO_FORMATS[image_format]
    return InspectedImage(image_format, content_type, extension, width, height)


# What render_variants raises on an original that cannot be decoded after all.
RENDER_ERRORS = (OSError, ValueError, Image.DecompressionBombError)


def render_variants(original: bytes) -> list[tuple[str, bytes, int, int, str, str]]:
    """(name, bytes, width, height, content_type, extension) per variant. Orientation is applied from
    EXIF and then every EXIF block (with GPS location) is dropped: variants carry pixels only."""
    made = []
    with Image.open(io.BytesIO(original)) as image:
        image.load()
        upright = ImageOps.exif_transpose(image)
        for name, longest, image_format in PHOTO_VARIANTS:
            variant = upright.copy()
            variant.thumbnail((longest, longest), Image.Resampling.LANCZOS)
            if image_format == "JPEG" and variant.mode not in ("RGB", "L"):
                variant = variant.convert("RGB")
            buffer = io.BytesIO()
            variant.save(buffer, format=image_format, quality=82, exif=b"")
            content_type, extension = PHOTO_FORMATS[image_format]
            made.append((name, buffer.getvalue(), variant.width, variant.height, content_type, extension))
    return made
