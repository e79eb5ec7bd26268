"""A real, minimal PDF (one page per paragraph, Helvetica text), written by hand for test and traffic uploads."""

from __future__ import annotations


def make_pdf(paragraphs: list[str]) -> bytes:
    page_ids = []
    font_id = 3
    next_id = 4
    page_objects: list[tuple[int, bytes]] = []
    for text in paragraphs:
        words, lines, line = text.split(), [], ""
        for word in words:
            if len(line) + len(word) > 80:
                lines.append(line)
                line = ""
            line = f"{line} {word}".strip()
        lines.append(line)
        escaped = [ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for ln in lines]
        stream = "BT /F1 11 Tf 14 TL 72 760 Td " + " ".join(f"({ln}) Tj T*" for ln in escaped) + " ET"
        content_id, page_id = next_id, next_id + 1
        next_id += 2
        page_ids.append(page_id)
        page_objects.append((content_id, f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream".encode("latin-1")))
        page_objects.append(
            (
                page_id,
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R "
                f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode(),
            )
        )
    kids = " ".join(f"{pid} 0 R" for pid in page_ids)
    numbered = [
        (1, b"<< /Type /Catalog /Pages 2 0 R >>"),
        (2, f"<< /Type /Pages /Kids [{kids}] /Count {len(page_ids)} >>".encode()),
        (3, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"),
        *page_objects,
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number, body in sorted(numbered):
        offsets[number] = len(out)
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(numbered) + 1}\n0000000000 65535 f \n".encode()
    for number in range(1, len(numbered) + 1):
        out += f"{offsets[number]:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(numbered) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
