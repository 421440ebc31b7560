"""Stooq's free daily CSV download, one HTTP request per ticker.

``GET <stooq_url>?s=aapl.us&i=d&d1=YYYYMMDD&d2=YYYYMMDD`` plus ``apikey=`` when
``config.stooq_api_key`` is set, through the shared HTTP client (network.py).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date

import httpx
import pandas as pd

from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.network import SourceUnavailableError, TransientSourceError, http_client
from portfolio_analysis.ratelimit import RateLimiter, limiter_for, pause_on_429
from portfolio_analysis.sources.base import network_window
from portfolio_analysis.validation import PriceDataError

# Yahoo's names of the big US indices and Stooq's.
STOOQ_INDICES = {"^GSPC": "^spx", "^DJI": "^dji", "^IXIC": "^ndq", "^NDX": "^ndx"}


def stooq_symbol(ticker: str) -> str:
    """Stooq's name for a US ticker: lower case, ``.us`` suffix, ``-`` for share classes.

    Indices keep their caret and get no suffix (``^GSPC`` is Stooq's ``^spx``).
    """
    if ticker.startswith("^"):
        return STOOQ_INDICES.get(ticker.upper(), ticker.lower())
    return f"{ticker.lower().replace('.', '-')}.us"


class StooqSource:
    """Stooq's free daily CSV download, one HTTP request per ticker."""

    name = "stooq"
    service = "stooq"

    def __init__(self, config: AnalysisConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        self._client = client

    def fetch(
        self, tickers: Sequence[str], start: date | None, end: date | None
    ) -> dict[str, pd.DataFrame | Exception]:
        start, end = network_window(start, end, self.config)
        limiter = limiter_for(self.config, self.service)
        result: dict[str, pd.DataFrame | Exception] = {}
        unavailable: SourceUnavailableError | None = None
        for ticker in tickers:
            if unavailable is not None:  # no point asking again in this run
                result[ticker] = unavailable
                continue
            limiter.acquire()
            try:
                result[ticker] = self._fetch_one(ticker, start, end, limiter)
            except SourceUnavailableError as error:
                unavailable = error
                result[ticker] = error
            except (TransientSourceError, PriceDataError) as error:
                result[ticker] = error
        return result

    def _fetch_one(self, ticker: str, start: date, end: date, limiter: RateLimiter) -> pd.DataFrame:
        timeout = self.config.timeout_seconds
        params = {
            "s": stooq_symbol(ticker),
            "i": "d",
            "d1": start.strftime("%Y%m%d"),
            "d2": end.strftime("%Y%m%d"),
        }
        if self.config.stooq_api_key:
            params["apikey"] = self.config.stooq_api_key
        client = self._client or http_client()
        try:
            response = client.get(self.config.stooq_url, params=params, timeout=timeout)
        except httpx.TimeoutException:
            raise TransientSourceError(f"Stooq did not answer within {timeout:g} s") from None
        except httpx.ConnectError as error:
            text = str(error).lower()
            if "name or service not known" in text or "nodename" in text or "resolve" in text:
                raise SourceUnavailableError(
                    "cannot reach Stooq: DNS lookup failed (no network, or a proxy is needed)"
                ) from None
            if "refused" in text:
                raise SourceUnavailableError(
                    "cannot connect to Stooq (connection refused)"
                ) from None
            raise TransientSourceError(f"cannot connect to Stooq ({error})") from None
        except httpx.TransportError as error:  # reset, incomplete body, protocol error
            raise TransientSourceError(
                f"Stooq closed the connection ({type(error).__name__}: {error})"
            ) from None
        status = response.status_code
        if status == 429:
            retry_after = pause_on_429(limiter, status, response.headers)
            raise TransientSourceError("rate limited by Stooq (HTTP 429)", retry_after)
        if status >= 500:
            raise TransientSourceError(f"Stooq server error (HTTP {status})")
        if status == 404:
            raise PriceDataError(ticker, "no data (unknown ticker)")
        if status >= 400:
            raise PriceDataError(ticker, f"Stooq refused the request (HTTP {status})")
        return self._parse(ticker, response.text)

    @staticmethod
    def _parse(ticker: str, text: str) -> pd.DataFrame:
        body = text.strip()
        lowered = body.lower()
        if lowered.startswith("no data") or body == "Brak danych":
            raise PriceDataError(ticker, "no data (unknown ticker or no rows in the date range)")
        if "exceeded the daily hits limit" in lowered:
            raise SourceUnavailableError(
                "Stooq's daily request limit is used up; try tomorrow or use another source"
            )
        if "apikey" in lowered and "," not in body.splitlines()[0]:
            raise SourceUnavailableError(
                "Stooq asks for an API key: set stooq_api_key, or drop stooq from the sources"
            )
        if lowered.startswith(("<!doctype", "<html")):
            # Stooq now answers programs without a key with a browser check page (HTTP 200).
            raise SourceUnavailableError(
                "Stooq answered with a web page instead of CSV (it asks programs for an API "
                "key or a browser check): set stooq_api_key, or drop stooq from the sources"
            )
        first_line = body.splitlines()[0] if body else ""
        header = [h.strip().lower() for h in first_line.split(",")]
        if "date" not in header or "close" not in header:
            raise TransientSourceError(
                "malformed answer from Stooq: expected a CSV with header "
                f"Date,Open,High,Low,Close,Volume, got {first_line[:60]!r}"
            )
        try:
            frame = pd.read_csv(io.StringIO(body))
        except (pd.errors.ParserError, ValueError) as error:
            raise TransientSourceError(f"malformed CSV from Stooq ({error})") from None
        if len(frame.columns) != len(header):
            raise TransientSourceError("malformed CSV from Stooq (rows don't match the header)")
        return frame
