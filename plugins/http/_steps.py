"""``reader()`` and ``writer()``: HTTP steps for a DataFlow definition, on aiohttp."""

from __future__ import annotations

import base64
import contextlib
import inspect
import logging
import secrets
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal, NamedTuple, NotRequired, TypedDict, Unpack

from asyncdataflow._pickling import PicklesAsConfig
from asyncdataflow.durable import Record, resume_position
from asyncdataflow.exceptions import DataFlowDefinitionError

from .._extras import needs

with needs("http", "aiohttp"):
    import aiohttp
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

from .._errors import PackDefinitionError, StepArgumentError
from .._vocab import (
    DATA,
    USERINFO_HINT,
    check_key,
    declare_outputs,
    unencoded_userinfo,
    without_userinfo,
)
from ._body import DEFAULT_MAX_SIZE, ResponseTooLargeError, decode_json, decode_text, read_limited
from ._select import SelectError, parse_select, select_path
from ._session import SessionHolder
from ._url import (
    DOT_SEGMENTS,
    fill_template,
    is_secret_name,
    redact_headers,
    redact_url,
    template_fields,
)

__all__ = [
    "DEFAULT_MAX_SIZE",
    "Paginator",
    "Reader",
    "ResponseTooLargeError",
    "SelectError",
    "StreamReader",
    "Writer",
    "reader",
    "writer",
]

logger = logging.getLogger("asyncdataflow.plugins.http")

ReadFormat = Literal["auto", "json", "text", "bytes"]
WriteFormat = Literal["json", "form", "bytes"]
NextUrl = str | URL | None
Paginator = Callable[[Any, aiohttp.ClientResponse], NextUrl | Awaitable[NextUrl]]
Auth = tuple[str, str] | aiohttp.BasicAuth

_READ_FORMATS = ("auto", "json", "text", "bytes")
_WRITE_FORMATS = ("json", "form", "bytes")
_KW = inspect.Parameter.KEYWORD_ONLY


def _basic(login: str, password: str) -> str:
    """An ``Authorization: Basic`` value (RFC 7617, UTF-8). aiohttp 3.14 deprecates its
    ``auth=``/``BasicAuth``, so the step always sends credentials as this header."""
    if ":" in login:
        raise StepArgumentError('a ":" is not allowed in a Basic auth login (RFC 7617)')
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


def _is_json(response: aiohttp.ClientResponse) -> bool:
    ctype = response.content_type
    return ctype == "application/json" or ctype.endswith("+json")


async def _read_body(
    response: aiohttp.ClientResponse, fmt: str, step: str, max_size: int | None
) -> Any:
    raw = await read_limited(response, max_size, step)
    if fmt == "auto":
        fmt = "json" if _is_json(response) else "text"
    if fmt == "json":
        # decode whatever the server called it; empty body -> None.
        try:
            return decode_json(response, raw)
        except ValueError as error:  # json.JSONDecodeError, UnicodeDecodeError
            error.add_note(
                f"{step}: the response of {redact_url(response.url)} "
                f"(Content-Type: {response.headers.get('Content-Type', '-')}) is not valid "
                "JSON; use format='text' or format='bytes' to get the body as it is"
            )
            raise
    if fmt == "text":
        return decode_text(response, raw)
    return raw


async def _next_url(
    paginate: Literal["link"] | Paginator, body: Any, response: aiohttp.ClientResponse
) -> URL | None:
    """The next page's URL (resolved against this page's), or ``None`` at the end."""
    target: str | URL | None
    if paginate == "link":
        link = response.links.get("next")
        target = link.get("url") if link is not None else None
    else:
        answer = paginate(body, response)
        target = await answer if inspect.isawaitable(answer) else answer
    if target is None or target == "":
        return None
    return response.url.join(URL(str(target)))


#: Redirect statuses. 307 and 308 repeat the request as it was (method and body); 301,
#: 302 and 303 turn anything but GET/HEAD into a GET without a body (what browsers and
#: aiohttp do), which a writer must not do silently.
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_KEEP_METHOD = frozenset({307, 308})
MAX_REDIRECTS = 10


def _without_secrets(headers: CIMultiDict[str] | None) -> CIMultiDict[str] | None:
    if not headers:
        return headers
    return CIMultiDict((k, v) for k, v in headers.items() if not is_secret_name(k))


def _redacted_request(info: aiohttp.RequestInfo) -> aiohttp.RequestInfo:
    """The request's info with secret query values and headers masked: aiohttp puts the
    URL into the error's text, which ends up in tracebacks and logs."""
    return aiohttp.RequestInfo(
        URL(redact_url(info.url)),
        info.method,
        CIMultiDictProxy(CIMultiDict(redact_headers(info.headers.items()))),
        URL(redact_url(info.real_url)),
    )


def _check_status(response: aiohttp.ClientResponse) -> None:
    """Raise aiohttp's own ClientResponseError for any status outside 2xx (with the
    request's secrets masked)."""
    if 200 <= response.status < 300:
        return
    raise aiohttp.ClientResponseError(
        _redacted_request(response.request_info),
        response.history,
        status=response.status,
        message=response.reason or "",
        headers=response.headers,
    )


class _Call(NamedTuple):
    """What one request of a call goes with: the session, the URL, the query parameters
    and the headers."""

    session: aiohttp.ClientSession
    url: URL
    params: Mapping[str, Any] | None
    headers: CIMultiDict[str] | None


class _Options(TypedDict):
    """What every HTTP step takes besides its URL (:func:`reader` and :func:`writer` say
    what each means)."""

    method: str
    headers: Mapping[str, str] | None
    auth: Auth | None
    timeout: float | None
    session: aiohttp.ClientSession | None
    key: str
    max_size: NotRequired[int | None]


def _options(
    method: str,
    headers: Mapping[str, str] | None,
    auth: Auth | None,
    timeout: float | None,
    session: aiohttp.ClientSession | None,
    key: str,
    max_size: int | None,
) -> _Options:
    return _Options(
        method=method, headers=headers, auth=auth, timeout=timeout, session=session, key=key,
        max_size=max_size,
    )  # fmt: skip


class _HttpStep(PicklesAsConfig):
    """What reader and writer share: URL (fixed, template or ``url`` parameter),
    headers, auth, timeout, the session, the size limit of a response, and ``aclose()``;
    the ``key`` is each one's own."""

    _kind = "http"

    def __init__(
        self,
        url: str | URL | None,
        *,
        limit_per_host: int | None,
        extra_params: tuple[str, ...],
        required_extra: tuple[str, ...] = (),
        **options: Unpack[_Options],
    ) -> None:
        method, timeout, session = options["method"], options["timeout"], options["session"]
        headers, auth = options["headers"], options["auth"]
        shown_url = "<url>" if url is None else redact_url(url)
        where = f"http.{self._kind}({method!s} {shown_url})"
        if not isinstance(method, str) or not method.isalpha():
            raise DataFlowDefinitionError(f"{where}: method must be an HTTP method name")
        self._method = method.upper()
        where = f"http.{self._kind}({self._method} {shown_url})"
        if url is not None and not isinstance(url, str | URL):
            raise DataFlowDefinitionError(f"{where}: url must be a str or yarl.URL")
        if isinstance(url, str) and unencoded_userinfo(url):
            raise PackDefinitionError(f"{where}: the URL is refused: {USERINFO_HINT}")
        if timeout is not None and not timeout > 0:
            raise DataFlowDefinitionError(f"{where}: timeout must be > 0 seconds, or None")
        if limit_per_host is not None and limit_per_host < 1:
            raise DataFlowDefinitionError(f"{where}: limit_per_host must be >= 1, or None")
        if session is not None and limit_per_host is not None:
            raise DataFlowDefinitionError(
                f"{where}: limit_per_host configures the session the step creates; with "
                "session= set the limit on your own session's TCPConnector instead"
            )
        self._headers: CIMultiDict[str] = CIMultiDict(headers or {})
        # Credentials given here; a URL carrying credentials as well is refused.
        self._has_auth = auth is not None or "Authorization" in self._headers
        if auth is not None:
            if isinstance(auth, aiohttp.BasicAuth):
                login, password = auth.login, auth.password
            elif (
                isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(a, str) for a in auth)
            ):
                login, password = auth
            else:
                raise DataFlowDefinitionError(
                    f"{where}: auth must be a (login, password) tuple of str "
                    "(or an aiohttp.BasicAuth)"
                )
            if "Authorization" in self._headers:
                raise DataFlowDefinitionError(
                    f"{where}: both auth= and an Authorization header; give one of them"
                )
            try:
                self._headers["Authorization"] = _basic(login, password)
            except ValueError as e:
                raise DataFlowDefinitionError(f"{where}: {e}") from None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._timeout_s = timeout
        self._sessions = SessionHolder(session, limit_per_host)

        # The URL: fixed (parsed once), a template (filled per call) or the `url` parameter.
        self._fixed_url: URL | None = None
        self._template: str | None = None
        self._fields: tuple[str, ...] = ()
        if url is None:
            url_params: tuple[str, ...] = ("url",)
        else:
            text = str(url)
            self._fields = template_fields(text, where=where) if isinstance(url, str) else ()
            if self._fields:
                self._template = text
                own = ("url", *required_extra, *extra_params)
                clash = sorted(set(self._fields) & set(own))
                if clash:
                    raise DataFlowDefinitionError(
                        f"{where}: URL template field(s) {clash} clash with the step's own "
                        f"parameters {list(own)}; rename the field"
                    )
            else:
                try:
                    self._fixed_url, fixed_auth = self._split_auth(
                        URL(url) if isinstance(url, str) else url, where
                    )
                except ValueError as e:
                    raise DataFlowDefinitionError(str(e)) from None
                if fixed_auth is not None:
                    self._headers["Authorization"] = fixed_auth
            url_params = self._fields

        self.__qualname__ = where
        self.__name__ = where
        # The flow-side parameters: required ones (URL, data) then optional ones.
        params = [inspect.Parameter(name, _KW) for name in (*url_params, *required_extra)]
        params += [inspect.Parameter(name, _KW, default=None) for name in extra_params]
        self.__signature__ = inspect.Signature(params)
        self._max_size = _check_max_size(where, options.get("max_size", DEFAULT_MAX_SIZE))

    def __repr__(self) -> str:
        return f"<{self.__qualname__}>"

    def _split_auth(self, url: URL, where: str) -> tuple[URL, str | None]:
        """Validate a URL and move its ``user:password`` into an ``Authorization: Basic``
        header value, so neither the request line nor aiohttp's exception messages (which
        show the URL) carry them."""
        if not url.is_absolute() or url.scheme not in ("http", "https"):
            raise StepArgumentError(
                f"{where}: {redact_url(url)!r} is not an absolute http(s) URL; "
                "give the full URL, e.g. http://host/path"
            )
        if url.user is None and url.password is None:
            return url, None
        if self._has_auth:
            raise StepArgumentError(
                f"{where}: credentials in both the URL and auth= (or an Authorization "
                "header); give them in one place"
            )
        try:
            auth = _basic(url.user or "", url.password or "")
        except ValueError as e:
            raise StepArgumentError(f"{where}: {e}") from None
        return url.with_user(None), auth

    def _target(self, kwargs: Mapping[str, Any]) -> tuple[URL, str | None]:
        """The request URL and, for credentials that were in it, the Authorization value."""
        if self._fixed_url is not None:
            return self._fixed_url, None
        if self._template is not None:
            url = self._fill(kwargs)
        else:
            raw = kwargs["url"]
            if isinstance(raw, URL):
                url = raw
            elif isinstance(raw, str):
                if unencoded_userinfo(raw):
                    raise StepArgumentError(
                        f"{self.__qualname__}: the url {without_userinfo(raw)!r} is refused: "
                        f"{USERINFO_HINT}"
                    )
                url = URL(raw)
            else:
                raise StepArgumentError(
                    f"{self.__qualname__}: the url parameter must be a str or yarl.URL, "
                    f"not {type(raw).__name__}"
                )
        return self._split_auth(url, self.__qualname__)

    def _fill(self, kwargs: Mapping[str, Any]) -> URL:
        """The template filled in; a value of ``.`` or ``..`` stays one segment."""
        values = {f: kwargs[f] for f in self._fields}
        if not any(str(v) in DOT_SEGMENTS for v in values.values()):
            return URL(fill_template(self._template or "", values))
        marker = "adfdot" + secrets.token_hex(8)
        parsed = URL(fill_template(self._template or "", values, marker))
        text = str(parsed).replace(marker + "1", "%2E").replace(marker + "2", "%2E%2E")
        return URL(text, encoded=True)

    def _merge_headers(
        self, url_auth: str | None, headers: Mapping[str, str] | None
    ) -> CIMultiDict[str] | None:
        """The factory's headers (with auth=), the URL's credentials, then the flow's."""
        if not headers and url_auth is None:
            return self._headers or None
        merged = CIMultiDict(self._headers)
        if url_auth is not None:
            merged["Authorization"] = url_auth
        if headers:
            merged.update(headers)
        return merged

    def _log_response(
        self, response: aiohttp.ClientResponse, headers: CIMultiDict[str] | None, start: float
    ) -> None:
        logger.debug(
            "%s: %s %s -> %d in %.1f ms, headers %s",
            self.__qualname__,
            response.method,
            redact_url(response.url),
            response.status,
            (time.perf_counter() - start) * 1000,
            redact_headers((headers or {}).items()),
        )

    async def _request(
        self, call: _Call, body_kw: dict[str, Any], *, all_methods: bool
    ) -> aiohttp.ClientResponse:
        """Send the request and follow redirects, returning the final response (the
        caller releases it). aiohttp's own redirect handling is off because it keeps
        custom secret headers (``X-Api-Key``) on a redirect to another origin and turns a
        POST answered with 301/302/303 into a GET without its body. Here a redirect to
        another origin drops every secret header; ``all_methods=False`` (the writer)
        follows only 307/308, which repeat the request with its body, and returns any
        other redirect for ``_check_status`` to raise."""
        start = time.perf_counter()
        session, url, params, headers = call
        method = self._method
        deadline = None if self._timeout_s is None else time.monotonic() + self._timeout_s
        origin = url.origin()
        for _hop in range(MAX_REDIRECTS + 1):
            timeout = self._timeout
            if deadline is not None:  # one timeout for the request and its redirects
                timeout = aiohttp.ClientTimeout(total=max(deadline - time.monotonic(), 1e-3))
            response = await session.request(
                method,
                url,
                params=params,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                **body_kw,
            )
            if logger.isEnabledFor(logging.DEBUG):
                self._log_response(response, headers, start)
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or location is None:
                return response
            if not all_methods and response.status not in _KEEP_METHOD:
                response.release()
                error = aiohttp.ClientResponseError(
                    _redacted_request(response.request_info),
                    response.history,
                    status=response.status,
                    message=response.reason or "",
                    headers=response.headers,
                )
                error.add_note(
                    f"{self.__qualname__}: the server redirects {method} "
                    f"{redact_url(response.url)} to {redact_url(location)} with "
                    f"{response.status}; the writer does not follow a {response.status} "
                    "(it would resend the request as a GET without its data): give the "
                    "URL it redirects to"
                )
                raise error
            response.release()
            try:
                url = response.url.join(URL(location))
            except ValueError:
                return response  # unreadable Location: _check_status raises the 3xx
            params = None  # the Location carries its own query
            if response.status not in _KEEP_METHOD and method not in ("GET", "HEAD"):
                method, body_kw = "GET", {}
            if url.origin() != origin:
                headers = _without_secrets(headers)  # never hand credentials elsewhere
        raise aiohttp.TooManyRedirects(
            _redacted_request(response.request_info),
            (),
            status=response.status,
            message="Too many redirects",
        )

    @contextlib.asynccontextmanager
    async def _exchange(
        self, sent: Awaitable[aiohttp.ClientResponse], url: URL, read_as: str
    ) -> AsyncIterator[tuple[aiohttp.ClientResponse, Any]]:
        """The response of a request to ``url`` being ``sent`` (:meth:`_request`), its
        status checked, and its body read ``read_as``. A timeout, in the request or in
        what the caller does with the response, gets a note naming the step's
        ``timeout=``."""
        try:
            async with await sent as response:
                _check_status(response)
                body = await _read_body(response, read_as, self.__qualname__, self._max_size)
                yield response, body
        except TimeoutError as e:
            e.add_note(
                f"{self.__qualname__}: no complete response from {redact_url(url)} within "
                f"timeout={self._timeout_s} s (set timeout= on the factory)"
            )
            raise

    async def aclose(self) -> None:
        """Close the sessions this step created (never one passed in with ``session=``).
        The step stays usable: the next call opens a new session."""
        await self._sessions.aclose()


class Reader(_HttpStep):
    """The step :func:`reader` returns: each call requests the URL (page after page with
    ``paginate=``) and returns the decoded body, or the part ``select=`` picks, under its
    key."""

    _kind = "reader"

    def __init__(
        self,
        url: str | URL | None,
        *,
        params: Mapping[str, Any] | None,
        format: ReadFormat,
        paginate: Literal["link"] | Paginator | None,
        max_pages: int,
        limit_per_host: int | None,
        select: str | None,
        **options: Unpack[_Options],
    ) -> None:
        super().__init__(
            url, limit_per_host=limit_per_host, extra_params=("params", "headers"), **options
        )
        where = self.__qualname__
        if format not in _READ_FORMATS:
            raise DataFlowDefinitionError(f"{where}: format must be one of {_READ_FORMATS}")
        if paginate is not None and paginate != "link" and not callable(paginate):
            raise DataFlowDefinitionError(
                f"{where}: paginate must be 'link', a callable (body, response) -> next URL "
                "or None, or None"
            )
        if not isinstance(max_pages, int) or max_pages < 1:
            raise DataFlowDefinitionError(f"{where}: max_pages must be an int >= 1")
        self._params = dict(params or {})
        self._format = format
        self._paginate = paginate
        self._max_pages = max_pages
        self._key = check_key(where, options["key"])
        self._select = parse_select(where, select)
        if self._select and format in ("text", "bytes"):
            raise DataFlowDefinitionError(
                f"{where}: select= picks a part of a JSON body; it does not go with "
                f"format={format!r}"
            )
        declare_outputs(self, self._key)

    def _call_args(self, kwargs: Mapping[str, Any]) -> _Call:
        """The session, URL, query parameters and headers of one call."""
        url, auth = self._target(kwargs)
        params = kwargs.get("params")
        if params:
            params = {**self._params, **params}
        else:
            params = self._params or None
        headers = self._merge_headers(auth, kwargs.get("headers"))
        return _Call(self._sessions.get(), url, params, headers)

    async def __call__(self, **kwargs: Any) -> dict[str, Any]:
        call = self._call_args(kwargs)
        if self._paginate is None:
            body, _ = await self._get(call, None)
            return {self._key: body}
        return {self._key: await self._get_pages(call)}

    async def _get(
        self, call: _Call, paginate: Literal["link"] | Paginator | None
    ) -> tuple[Any, URL | None]:
        """One request: the decoded body and, when paginating, the next page's URL."""
        sent = self._request(call, {}, all_methods=True)
        async with self._exchange(sent, call.url, self._format) as (response, body):
            next_url = None
            if paginate is not None:  # the paginator sees the whole body
                next_url = await _next_url(paginate, body, response)
            if self._select:
                body = select_path(body, self._select, self.__qualname__, response.url)
        return body, next_url

    async def _get_pages(self, call: _Call) -> list[Any]:
        bodies = [page.body async for page in self._pages(call)]
        if all(isinstance(b, list) for b in bodies):
            return [item for body in bodies for item in body]
        return bodies

    async def _pages(
        self, call: _Call, resume: tuple[URL, int] | None = None
    ) -> AsyncGenerator[_Page, None]:
        """Each page, requesting the next one only when asked for it; from the call's URL
        (with its query parameters), or from ``resume`` (a page's URL, carrying its own
        query, and its number). Secret headers go only to the call URL's origin."""
        _, url, params, headers = call
        origin = url.origin()
        next_url: URL | None = url
        page = 0
        if resume is not None:
            next_url, page, params = resume[0], resume[1] - 1, None
        fetched = 0
        while next_url is not None:
            page += 1
            fetched += 1
            if fetched > self._max_pages:
                logger.warning(
                    "%s: stopped after max_pages=%d pages; %s was not fetched",
                    self.__qualname__,
                    self._max_pages,
                    redact_url(next_url),
                )
                break
            page_headers = headers
            if headers and next_url.origin() != origin:
                # Never hand credentials to another origin (nor does a redirect): a next
                # page elsewhere is requested without secret headers.
                page_headers = _without_secrets(headers)
            here = next_url
            query = params if fetched == 1 else None  # next URLs carry their own query
            try:
                page_call = call._replace(url=here, params=query, headers=page_headers)
                body, next_url = await self._get(page_call, self._paginate)
            except Exception as e:
                if page > 1:
                    e.add_note(f"{self.__qualname__}: while fetching page {page}")
                raise
            yield _Page(body, here.extend_query(query) if query else here, next_url, page)


class _Page(NamedTuple):
    """One page read: its body, the URL requested (with its query), the next page's URL
    (``None`` after the last page) and its number (the first page is 1)."""

    body: Any
    url: URL
    next: URL | None
    number: int


class StreamReader(Reader):
    """The step :func:`reader` returns with ``stream=True``: a source (an async
    generator) that yields ``{"data": body}`` per page, requesting the next page only when
    the flow asks for the next record.

    With ``paginate=``, each record is a :class:`~asyncdataflow.Record` whose position is
    where a restarted flow (``DataFlow(..., checkpoint=store)``) goes on:
    ``{"url": <the next page's URL>, "page": <its number>}``, or after the last page that
    page's own URL and number (it is read again: an API that grows adds to its last page).
    """

    async def __call__(self, **kwargs: Any) -> AsyncGenerator[dict[str, Any], None]:  # type: ignore[override]
        position = resume_position()
        call = self._call_args(kwargs)
        if self._paginate is None:
            body, _ = await self._get(call, None)
            yield {self._key: body}
            return
        resume = None if position is None else self._resume_from(position)
        pages = self._pages(call, resume)
        async with contextlib.aclosing(pages):
            async for page in pages:
                if page.next is None:  # the last page, for now: read it again next time
                    mark = {"url": str(page.url), "page": page.number}
                else:
                    mark = {"url": str(page.next), "page": page.number + 1}
                yield Record({self._key: page.body}, position=mark)

    def _resume_from(self, position: Any) -> tuple[URL, int]:
        """The page a checkpoint's position names: its URL and number."""
        text = position.get("url") if isinstance(position, dict) else None
        number = position.get("page") if isinstance(position, dict) else None
        url = URL(text, encoded=True) if isinstance(text, str) else None
        if (
            url is None
            or not url.is_absolute()
            or url.scheme not in ("http", "https")
            or isinstance(number, bool)
            or not isinstance(number, int)
            or number < 1
        ):
            shown = redact_url(text) if isinstance(text, str) else type(position).__name__
            raise StepArgumentError(
                f"{self.__qualname__}: the checkpoint holds a position this reader did not "
                f"write ({shown!r:.100}; a reader's position is {{'url': <page URL>, "
                f"'page': <number>}}); was the flow's name given to another flow's "
                f"checkpoint? Give this flow its own name=, or remove its checkpoint"
            )
        return url, number


def _check_max_size(where: str, max_size: Any) -> int | None:
    if max_size is None:
        return None
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise PackDefinitionError(
            f"{where}: max_size={max_size!r} must be a number of bytes >= 1, or None for no limit"
        )
    return max_size


class Writer(_HttpStep):
    """The step :func:`writer` returns: each call sends its data parameter (as JSON, a
    form or bytes) and returns the response's status and decoded body."""

    _kind = "writer"

    def __init__(
        self, url: str | URL | None, *, format: WriteFormat, **options: Unpack[_Options]
    ) -> None:
        where = f"http.writer({options['method']!s} {'<url>' if url is None else redact_url(url)})"
        self._key = check_key(where, options["key"])
        super().__init__(
            url,
            limit_per_host=None,
            extra_params=("params", "headers"),
            required_extra=(self._key,),
            **options,
        )
        declare_outputs(self, "status", "response")
        if format not in _WRITE_FORMATS:
            raise DataFlowDefinitionError(
                f"{self.__qualname__}: format must be one of {_WRITE_FORMATS}"
            )
        self._format = format

    async def __call__(self, **kwargs: Any) -> dict[str, Any]:
        data = kwargs[self._key]
        if self._format == "bytes" and not isinstance(data, bytes | bytearray | memoryview):
            raise StepArgumentError(
                f"{self.__qualname__}: format='bytes' sends bytes, got "
                f"{type(data).__name__}; encode it first or use format='json'"
            )
        url, auth = self._target(kwargs)
        params = kwargs.get("params") or None
        headers = self._merge_headers(auth, kwargs.get("headers"))
        call = _Call(self._sessions.get(), url, params, headers)
        body_kw: dict[str, Any] = {"json": data} if self._format == "json" else {"data": data}
        sent = self._request(call, body_kw, all_methods=False)
        async with self._exchange(sent, url, "auto") as (response, body):
            status = response.status
        return {"status": status, "response": body}


def reader(
    url: str | URL | None = None,
    *,
    method: str = "GET",
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    auth: Auth | None = None,
    timeout: float | None = 30.0,
    format: ReadFormat = "auto",
    paginate: Literal["link"] | Paginator | None = None,
    max_pages: int | None = None,
    session: aiohttp.ClientSession | None = None,
    limit_per_host: int | None = None,
    key: str = DATA,
    select: str | None = None,
    stream: bool = False,
    max_size: int | None = DEFAULT_MAX_SIZE,
) -> Reader:
    """A step that requests a URL and returns ``{"data": body}`` (``{key: body}`` with
    ``key=``). ``select="items"`` (a dotted path, ``"result.items"``, digits index a list)
    returns that part of a decoded JSON body instead of all of it; with pagination, each
    page's selection.

    ``stream=True``: the step is a source (an async generator function, a
    :class:`StreamReader`) that yields ``{"data": body}`` per page (with ``paginate=``)
    instead of one list of every page, requesting a page only when the flow asks for the
    next record; in a flow with ``checkpoint=`` it resumes at the page after the last
    committed one (see :class:`StreamReader`). ``max_pages`` defaults to 100 pages, and to
    no limit with ``stream=True`` (memory then holds the pages in flight only).
    ``max_size``: a body over this many bytes raises :class:`ResponseTooLargeError`
    before it is read whole (default :data:`DEFAULT_MAX_SIZE`, 64 MiB; ``None``: no
    limit).

    Its flow-side parameters: ``url`` when no ``url`` is given here, else the ``{field}``
    names of the URL template (filled in URL-quoted); and, optional, ``params`` and
    ``headers``, merged over the ones given here. See docs/http.md for every option.
    """
    if max_pages is None:
        max_pages = sys.maxsize if stream else 100
    options = _options(method, headers, auth, timeout, session, key, max_size)
    return (StreamReader if stream else Reader)(
        url,
        params=params,
        format=format,
        paginate=paginate,
        max_pages=max_pages,
        limit_per_host=limit_per_host,
        select=select,
        **options,
    )


def writer(
    url: str | URL | None = None,
    *,
    method: str = "POST",
    format: WriteFormat = "json",
    headers: Mapping[str, str] | None = None,
    auth: Auth | None = None,
    timeout: float | None = 30.0,
    session: aiohttp.ClientSession | None = None,
    key: str = DATA,
    max_size: int | None = DEFAULT_MAX_SIZE,
) -> Writer:
    """A step that sends its ``data`` parameter (as JSON, a form or bytes) and returns
    ``{"status": int, "response": body}``. A response body over ``max_size`` bytes raises
    :class:`ResponseTooLargeError` (default 64 MiB; ``None``: no limit).

    Its flow-side parameters: ``data`` (the ``key=`` name instead, when given); ``url``
    when no ``url`` is given here, else the URL template's fields; and, optional,
    ``params`` and ``headers``.
    """
    options = _options(method, headers, auth, timeout, session, key, max_size)
    return Writer(url, format=format, **options)
