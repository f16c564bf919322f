"""The two ways a venue's network printer pulls its jobs from Brigade, with no inbound connection to
the venue. Both authenticate the printer by its device token (in the URL path, or as the HTTP Basic
password for CloudPRNT); an unknown token is 401 and learns nothing. The queue lives in SQL
(`print_jobs`): a job is offered until the printer confirms it, oldest first.

Star CloudPRNT (`/functions/v1/cloudprnt/{token}`), as the CloudPRNT Developer Guide describes it:
  POST   the printer's status (JSON) -> {"jobReady": bool, "mediaTypes": [...], "jobToken": job id}
  GET    ?type=<media type>&mac=…[&token=<job id>] -> the job in that media type (404 none, 415 type)
  DELETE ?code=<status>&mac=…[&token=<job id>] -> confirms it: "OK"/2xx printed, 4xx printer error
         (offered again when it is back), 5xx data error (failed; staff reprint). A GET with `delete`
         in the query (deleteMethod GET) is the same confirmation.

Epson Server Direct Print (`/functions/v1/epson-sdp/{token}`), form-encoded POSTs:
  ConnectionType=GetRequest  -> 200 text/xml PrintRequestInfo with one ePOS-Print job, or an empty body
  ConnectionType=SetResponse -> ResponseFile (PrintResponseInfo) with each job's success and code
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from psycopg_pool import AsyncConnectionPool

from brigade import printing, queries
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import InvalidInput, Unauthorized, wrap_exceptions
from functions.deps import get_pool

log = logging.getLogger("brigade.functions.printers")
router = APIRouter()

# Epson result codes that mean "the data is wrong" (printing again will not help); every other
# failure is the printer's state (cover open, out of paper, offline): the job waits for it.
EPSON_DATA_ERRORS = {"SchemaError", "ParameterError", "EX_ENPC_BADREQUEST"}


def _token(request: Request, path_token: str | None) -> str:
    if path_token:
        return path_token
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value, validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            pass
    raise Unauthorized("a printer authenticates with its device token", hint="unknown_device")


def _job_id(raw: str | None) -> uuid.UUID | None:
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise InvalidInput("token is not a job token Brigade issued", hint="invalid_job_token") from exc


async def _call(pool: AsyncConnectionPool, name: str, params: dict[str, Any]) -> Any:
    async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
        row = await (await conn.execute(queries.get(name), params)).fetchone()
    return next(iter(row.values())) if row else None


def _outcome(code: str) -> str:
    """A CloudPRNT status code (URL-encoded, "200 OK", "OK", "410 Out of paper", "510 …") as an outcome."""
    code = unquote(code or "").strip()
    if code.upper().startswith("OK") or code.startswith("2"):
        return "printed"
    if code.startswith("5"):
        return "failed"
    return "retry"


# ---- Star CloudPRNT -----------------------------------------------------------------------------------


async def cloudprnt_poll(request: Request, pool: AsyncConnectionPool, path_token: str | None) -> JSONResponse:
    token = _token(request, path_token)
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidInput("the poll body is JSON", hint="invalid_json") from exc
    if not isinstance(body, dict):
        raise InvalidInput("the poll body is a JSON object", hint="invalid_json")
    status = unquote(str(body.get("statusCode") or ""))[:200] or None
    poll = await _call(pool, "printer_poll", {"token": token, "status": status, "address": str(body.get("printerMAC") or "")[:64] or None})
    job = poll["job"]
    if job is None or body.get("printingInProgress") is True:
        return JSONResponse({"jobReady": False})
    return JSONResponse({"jobReady": True, "mediaTypes": list(printing.CLOUDPRNT_MEDIA_TYPES), "jobToken": job["job_id"],
                         "deleteMethod": "DELETE"})


async def cloudprnt_get(request: Request, pool: AsyncConnectionPool, path_token: str | None) -> Response:
    if "delete" in request.query_params:
        return await cloudprnt_delete(request, pool, path_token)
    token = _token(request, path_token)
    media_type = request.query_params.get("type") or printing.CLOUDPRNT_MEDIA_TYPES[0]
    if media_type.split(";")[0].strip().lower() not in printing.CLOUDPRNT_MEDIA_TYPES:
        await _call(pool, "printer_poll", {"token": token, "status": None, "address": None})  # still authenticates first
        return Response(status_code=415)
    job = await _call(pool, "printer_take_job", {"token": token, "job_id": _job_id(request.query_params.get("token"))})
    if job is None:
        return Response(status_code=404)
    log.info("print job fetched", extra={"action": "print_job_fetched", "job_id": job["job_id"], "media_type": media_type})
    return Response(printing.render(job["document"], media_type), media_type=media_type.split(";")[0].strip(),
                    headers={"X-Star-Cut": "partial; feed=true"})


async def cloudprnt_delete(request: Request, pool: AsyncConnectionPool, path_token: str | None) -> Response:
    token = _token(request, path_token)
    code = request.query_params.get("code", "")
    outcome = _outcome(code)
    changed = await _call(pool, "printer_finish_job", {"token": token, "job_id": _job_id(request.query_params.get("token")),
                                                      "outcome": outcome, "code": unquote(code)[:100] or None})
    log.info("print job confirmed", extra={"action": "print_job_finished", "outcome": outcome, "changed": bool(changed)})
    return Response(status_code=200)


@router.post("/cloudprnt")
@router.post("/cloudprnt/{token}")
async def cloudprnt_post_route(request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                               token: str | None = None) -> Response:
    return await cloudprnt_poll(request, pool, token)


@router.get("/cloudprnt")
@router.get("/cloudprnt/{token}")
async def cloudprnt_get_route(request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                              token: str | None = None) -> Response:
    return await cloudprnt_get(request, pool, token)


@router.delete("/cloudprnt")
@router.delete("/cloudprnt/{token}")
async def cloudprnt_delete_route(request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                                 token: str | None = None) -> Response:
    return await cloudprnt_delete(request, pool, token)


# ---- Epson Server Direct Print ---------------------------------------------------------------------------


@router.post("/epson-sdp/{token}")
async def epson_sdp(token: str, request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)]) -> Response:
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True).items()}
    kind = form.get("ConnectionType", "")
    if kind == "GetRequest":
        poll = await _call(pool, "printer_poll", {"token": token, "status": None, "address": form.get("ID", "")[:64] or None})
        job = await _call(pool, "printer_take_job", {"token": token, "job_id": None}) if poll["job"] else None
        if job is None:
            return Response(b"", media_type="text/xml")
        log.info("print job fetched", extra={"action": "print_job_fetched", "job_id": job["job_id"], "protocol": "epson_sdp"})
        return Response(printing.epson_print_request([(job["job_id"], job["document"])]), media_type="text/xml; charset=utf-8")
    # authenticate before reading anything else the device sent
    await _call(pool, "printer_poll", {"token": token, "status": None, "address": form.get("ID", "")[:64] or None})
    if kind == "SetResponse":
        try:
            results = printing.epson_responses(form.get("ResponseFile", ""))
        except Exception as exc:  # defusedxml and expat raise several types for hostile or broken XML
            raise InvalidInput("ResponseFile is not a PrintResponseInfo document", hint="invalid_response_file") from exc
        for job_id, success, code in results:
            outcome = "printed" if success else "failed" if code in EPSON_DATA_ERRORS else "retry"
            await _call(pool, "printer_finish_job", {"token": token, "job_id": _job_id(job_id), "outcome": outcome,
                                                     "code": code or ("OK" if success else None)})
        return Response(b"", media_type="text/xml")
    raise InvalidInput("ConnectionType is GetRequest or SetResponse", hint="invalid_connection_type")
