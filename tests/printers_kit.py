"""Simulated network printers that speak to Brigade over HTTP exactly as the devices do: a Star
CloudPRNT client (POST poll → GET job → DELETE with its result code) and an Epson Server Direct Print
client (form POST GetRequest → ePOS-Print XML → SetResponse with a PrintResponseInfo). Each keeps the
paper it printed, decoded back to text lines with their styles, so tests read what the kitchen reads."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from brigade.printing import EPOS_NS

ESC = b"\x1b"


@dataclass
class Slip:
    """One printed document: its lines (text) and which of them printed inverted or bold."""

    lines: list[str]
    inverted: list[str] = field(default_factory=list)
    bold: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def decode_star(data: bytes) -> Slip:
    """Star Line Mode bytes back to lines, tracking ESC 4/5 (invert) and ESC E/F (emphasis)."""
    assert data.startswith(ESC + b"@"), "a job starts by initialising the printer"
    assert data.rstrip(b"\n").endswith(ESC + b"d\x03"), "and ends with a cut"
    slip = Slip([])
    invert = bold = False
    text = b""
    line_inverted = line_bold = False
    i = 0
    while i < len(data):
        if data[i:i + 1] == ESC:
            cmd = data[i + 1:i + 2]
            if cmd == b"4":
                invert = True
            elif cmd == b"5":
                invert = False
            elif cmd == b"E":
                bold = True
            elif cmd == b"F":
                bold = False
            skip = {b"@": 2, b"4": 2, b"5": 2, b"E": 2, b"F": 2, b"i": 4, b"d": 3, b"\x1d": 4}[cmd]
            i += skip
            continue
        if data[i:i + 1] == b"\n":
            line = text.decode("ascii")
            slip.lines.append(line)
            if line_inverted:
                slip.inverted.append(line)
            if line_bold:
                slip.bold.append(line)
            text, line_inverted, line_bold = b"", False, False
        else:
            text += data[i:i + 1]
            line_inverted, line_bold = line_inverted or invert, line_bold or bold
        i += 1
    return slip


class CloudPrntPrinter:
    """A Star printer with a CloudPRNT interface, configured with Brigade's URL (token in the path)."""

    def __init__(self, base_url: str, token: str, mac: str = "00:11:62:00:00:01") -> None:
        self.url = f"{base_url}/functions/v1/cloudprnt/{token}"
        self.mac = mac
        self.paper: list[Slip] = []
        self.status = "200 OK"

    def poll(self) -> dict[str, Any]:
        r = httpx.post(self.url, json={"status": "23 6 0 0 0 0 0 0 0 ", "printerMAC": self.mac,
                                       "statusCode": quote(self.status), "printingInProgress": False, "clientAction": None})
        assert r.status_code == 200, r.text
        return r.json()

    def cycle(self, paper_out: bool = False) -> Slip | None:
        """One poll; when a job is ready, fetch it in the first media type offered, print, confirm."""
        answer = self.poll()
        if not answer["jobReady"]:
            return None
        media = answer["mediaTypes"][0]
        got = httpx.get(self.url, params={"type": media, "mac": self.mac, "token": answer["jobToken"]})
        assert got.status_code == 200 and got.headers["content-type"].startswith(media), got.status_code
        if paper_out:  # the job never reaches the paper: the printer reports its error in the next poll
            self.status = "410 Out of paper"
            self.poll()
            self.status = "200 OK"
            return None
        slip = decode_star(got.content)
        self.paper.append(slip)
        done = httpx.delete(self.url, params={"code": "OK", "mac": self.mac, "token": answer["jobToken"]})
        assert done.status_code == 200
        return slip

    def drain(self, limit: int = 20) -> list[Slip]:
        printed = []
        for _ in range(limit):
            slip = self.cycle()
            if slip is None:
                return printed
            printed.append(slip)
        raise AssertionError("the printer never ran out of jobs")


def decode_epos(xml_body: bytes) -> tuple[str, Slip]:
    """A PrintRequestInfo back to (printjobid, slip), reading the <text> elements' em/reverse."""
    root = ET.fromstring(xml_body)
    assert root.tag == "PrintRequestInfo"
    job_id = root.findtext("ePOSPrint/Parameter/printjobid") or ""
    doc = root.find(f"ePOSPrint/PrintData/{{{EPOS_NS}}}epos-print")
    assert doc is not None, "PrintData carries an epos-print document in Epson's namespace"
    slip = Slip([])
    for el in doc:
        tag = el.tag.split("}")[-1]
        if tag == "text":
            line = (el.text or "").rstrip("\n")
            slip.lines.append(line)
            if el.get("reverse") == "true":
                slip.inverted.append(line)
            if el.get("em") == "true":
                slip.bold.append(line)
    assert doc[-1].tag.endswith("cut")
    return job_id, slip


class EpsonSdpPrinter:
    """An Epson TM printer with Server Direct Print set to Brigade's URL."""

    def __init__(self, base_url: str, token: str, device_id: str = "TM-m30III-kitchen") -> None:
        self.url = f"{base_url}/functions/v1/epson-sdp/{token}"
        self.device_id = device_id
        self.paper: list[Slip] = []

    def _post(self, form: dict[str, str]) -> httpx.Response:
        return httpx.post(self.url, data=form)

    def cycle(self, error_code: str | None = None) -> Slip | None:
        r = self._post({"ConnectionType": "GetRequest", "ID": self.device_id, "Name": "kitchen"})
        assert r.status_code == 200, r.text
        if not r.content:
            return None
        job_id, slip = decode_epos(r.content)
        success = error_code is None
        if success:
            self.paper.append(slip)
        response = (f'<?xml version="1.0" encoding="UTF-8"?><PrintResponseInfo Version="2.00"><ePOSPrint><Parameter>'
                    f'<devid>local_printer</devid><printjobid>{job_id}</printjobid></Parameter><PrintResponse>'
                    f'<response xmlns="{EPOS_NS}" success="{str(success).lower()}" code="{error_code or ""}" '
                    f'status="251658262" battery="0"/></PrintResponse></ePOSPrint></PrintResponseInfo>')
        done = self._post({"ConnectionType": "SetResponse", "ID": self.device_id, "ResponseFile": response})
        assert done.status_code == 200, done.text
        return slip if success else None

    def drain(self, limit: int = 20) -> list[Slip]:
        printed = []
        for _ in range(limit):
            slip = self.cycle()
            if slip is None:
                return printed
            printed.append(slip)
        raise AssertionError("the printer never ran out of jobs")


def order_numbers(slips: list[Slip]) -> list[int]:
    out = []
    for slip in slips:
        m = next(re.match(r"^\s*#(\d+)\s*$", line) for line in slip.lines if re.match(r"^\s*#(\d+)\s*$", line))
        out.append(int(m.group(1)))
    return out


def new_mac() -> str:
    raw = uuid.uuid4().hex[:12]
    return ":".join(raw[i:i + 2] for i in range(0, 12, 2))
