"""Images that carry evidence, made by the tests themselves: camera EXIF, a generator's PNG
chunk, a Stable Diffusion watermark (with the watermark library), near-duplicate variants of one
photograph, and C2PA manifests signed with a throw-away certificate made here."""

from __future__ import annotations

import datetime
import io
import json

import numpy as np
from PIL import Image as PILImage
from PIL import PngImagePlugin
from skimage import data as samples

SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")


def photo(name: str = "astronaut", side: int = 384) -> PILImage.Image:
    """One of scikit-image's sample photographs, square, ``side`` pixels."""
    pixels = getattr(samples, name)()
    height, width = pixels.shape[:2]
    crop = min(height, width)
    image = PILImage.fromarray(pixels[:crop, :crop]).convert("RGB")
    return image.resize((side, side), PILImage.Resampling.LANCZOS)


def encode(image: PILImage.Image, fmt: str = "JPEG", **options) -> bytes:
    """``image`` saved as ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def camera_jpeg(image: PILImage.Image | None = None) -> bytes:
    """A JPEG with a camera's EXIF: make, model, lens, capture time, software."""
    exif = PILImage.Exif()
    exif[271], exif[272], exif[305] = "FUJIFILM", "X-T5", "Digital Camera X-T5 Ver2.00"
    sub = exif.get_ifd(0x8769)
    sub[36867] = "2026:11:30 08:15:00"
    sub[42036] = "XF16-55mmF2.8 R LM WR"
    return encode(image or photo(), "JPEG", quality=92, exif=exif.tobytes())


def generator_png(image: PILImage.Image | None = None) -> bytes:
    """A PNG with the ``parameters`` chunk Stable Diffusion web UIs write."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a lighthouse at dawn\nSteps: 30, Sampler: Euler a, Seed: 42")
    return encode(image or photo("coffee"), "PNG", pnginfo=info)


def watermarked_png(image: PILImage.Image | None = None) -> bytes:
    """A PNG marked as the Stable Diffusion reference scripts mark their outputs."""
    from imwatermark import WatermarkEncoder

    bgr = np.asarray(image or photo("chelsea", 512))[:, :, ::-1].copy()
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", b"StableDiffusionV1")
    marked = encoder.encode(bgr, "dwtDct")
    return encode(PILImage.fromarray(marked[:, :, ::-1].copy()), "PNG")


def near_duplicates(image: PILImage.Image) -> dict[str, bytes]:
    """The same picture re-encoded, resized and cropped a little."""
    width, height = image.size
    margin = width // 40
    return {
        "reencoded": encode(image, "JPEG", quality=60),
        "resized": encode(image.resize((width * 2 // 3, height * 2 // 3)), "JPEG", quality=85),
        "cropped": encode(image.crop((margin, margin, width - margin, height - margin)), "PNG"),
    }


# --- C2PA -----------------------------------------------------------------------------------


def _certificates():
    """A throw-away CA and a signing certificate it issued, as PEM chain and PEM key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str):
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RealFake tests"),
            ]
        )

    def usage(sign_certificates: bool):
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=sign_certificates,
            crl_sign=sign_certificates,
            encipher_only=False,
            decipher_only=False,
        )

    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def builder(subject, issuer, public_key):
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(validity[0])
            .not_valid_after(validity[1])
        )

    ca = (
        builder(name("Test CA"), name("Test CA"), ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        builder(name("Test Signer"), ca.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + ca.public_bytes(pem)
    private = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return chain, private


def signed_jpeg(source_type: str = "trainedAlgorithmicMedia", image=None) -> bytes:
    """A JPEG with a C2PA manifest whose action states ``source_type``, signed here."""
    import c2pa

    chain, private = _certificates()
    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, private, None)
    )
    manifest = {
        "claim_generator_info": [{"name": "realfake-test-generator", "version": "1.0"}],
        "title": "signed.jpg",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/"
                            + source_type,
                        }
                    ]
                },
            }
        ],
    }
    signed = io.BytesIO()
    source = io.BytesIO(encode(image or photo("rocket", 256), "JPEG", quality=90))
    c2pa.Builder(json.dumps(manifest)).sign(signer, "image/jpeg", source, signed)
    return signed.getvalue()


def tampered(data: bytes) -> bytes:
    """``data`` with a few bytes of the picture changed after signing."""
    changed = bytearray(data)
    for offset in range(-400, -300, 7):
        changed[offset] ^= 0x55
    return bytes(changed)
