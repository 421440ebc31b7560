"""Headline scoring (VADER + finance lexicon), sentiment summaries and the embedded headlines."""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from portfolio_analysis.config import AnalysisConfig
from portfolio_analysis.sentiment import (
    FINANCE_LEXICON,
    Article,
    EmbeddedNewsSource,
    NewsSourceError,
    NewsUnavailableError,
    apply_context_rules,
    classify,
    fetch_headlines,
    normalize_headline,
    score_headlines,
    summarize_sentiment,
)
from portfolio_analysis.vocabulary import NEGATIVE_SENTIMENT
from vaderSentiment.vaderSentiment import B_INCR, N_SCALAR, SentimentIntensityAnalyzer

LABELLED = Path(__file__).parent / "data" / "labelled_headlines.csv"
SAMPLE_TICKERS = ("AAPL", "MSFT", "IBM", "GOOG", "FB")


def _vader_normalize(total: float) -> float:
    """VADER's compound: the summed valences squashed by x / sqrt(x^2 + 15)."""
    return total / math.sqrt(total * total + 15)


@pytest.fixture(scope="module")
def plain() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def _labelled() -> list[dict[str, str]]:
    with LABELLED.open(encoding="utf-8") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


# --- scoring -------------------------------------------------------------------------------


def test_plain_vader_on_fixed_sentences_from_its_lexicon(plain):
    lex = plain.lexicon
    # Two plain lexicon words, no modifiers: the valences add.
    expected = _vader_normalize(lex["profits"] + lex["good"])
    assert plain.polarity_scores("Profits were good")["compound"] == pytest.approx(
        expected, abs=1e-4
    )
    # "not" right before a word scales it by N_SCALAR.
    expected = _vader_normalize(lex["good"] * N_SCALAR)
    assert plain.polarity_scores("The quarter was not good")["compound"] == pytest.approx(
        expected, abs=1e-4
    )
    # "very" boosts the next word by B_INCR; plain VADER also reads "demand" as negative.
    expected = _vader_normalize(lex["demand"] + lex["strong"] + B_INCR)
    assert plain.polarity_scores("Demand is very strong")["compound"] == pytest.approx(
        expected, abs=1e-4
    )
    assert lex["demand"] < 0


def test_extended_scores_follow_the_same_arithmetic_with_finance_words(plain):
    lex = plain.lexicon
    # Words without a finance entry score exactly as in plain VADER.
    for sentence in ("Profits were good", "The quarter was not good", "What a terrible day"):
        assert score_headlines([sentence]) == [plain.polarity_scores(sentence)["compound"]]
    # "demand" is neutral for us: only the boosted "strong" counts.
    assert score_headlines(["Demand is very strong"])[0] == pytest.approx(
        _vader_normalize(lex["strong"] + B_INCR), abs=1e-4
    )
    # A finance word, negated: "did not beat".
    assert score_headlines(["Earnings did not beat"])[0] == pytest.approx(
        _vader_normalize(FINANCE_LEXICON["beat"] * N_SCALAR), abs=1e-4
    )


@pytest.mark.parametrize(
    ("word", "sign"),
    [
        ("surges", 1),
        ("soars", 1),
        ("rallies", 1),
        ("bullish", 1),
        ("plunges", -1),
        ("tumbles", -1),
        ("bearish", -1),
    ],
)
def test_words_missing_from_plain_vader_now_carry_sentiment(plain, word, sign):
    headline = (
        f"Stock {word} on the news"
        if word not in {"bullish", "bearish"}
        else (f"Analysts turn {word} on the stock")
    )
    assert word not in plain.lexicon
    assert plain.polarity_scores(headline)["compound"] == 0.0
    assert np.sign(score_headlines([headline])[0]) == sign


@pytest.mark.parametrize(
    ("headline", "label"),
    [
        ("Retailer beats estimates", "positive"),
        ("Bank upgraded by analysts", "positive"),
        ("Carmaker downgraded by analysts", "negative"),
        ("Shares of the miner unchanged", "neutral"),  # plain VADER: "shares" +1.2
    ],
)
def test_finance_wording_is_classified_as_a_reader_would(plain, headline, label):
    assert classify(score_headlines([headline])[0]) == label
    assert classify(plain.polarity_scores(headline)["compound"]) != label


def test_extension_scores_labelled_headlines_better_than_plain_vader(plain):
    rows = _labelled()
    labels = [row["label"] for row in rows]
    assert len(rows) >= 40
    assert min(labels.count(c) for c in ("positive", "negative", "neutral")) >= 12
    plain_scores = [plain.polarity_scores(row["headline"])["compound"] for row in rows]
    our_scores = score_headlines([row["headline"] for row in rows])
    target = np.array([{"positive": 1, "neutral": 0, "negative": -1}[label] for label in labels])

    def accuracy(scores: list[float]) -> float:
        return float(
            np.mean([classify(s) == label for s, label in zip(scores, labels, strict=True)])
        )

    def correlation(scores: list[float]) -> float:
        return float(np.corrcoef(target, scores)[0, 1])

    assert accuracy(our_scores) >= accuracy(plain_scores) + 0.15
    assert correlation(our_scores) >= correlation(plain_scores) + 0.2
    assert accuracy(our_scores) >= 0.8


def _split(part: str) -> list[dict[str, str]]:
    return [row for row in _labelled() if row["split"] == part]


def _accuracy(scores: list[float], rows: list[dict[str, str]]) -> float:
    return float(np.mean([classify(s) == r["label"] for s, r in zip(scores, rows, strict=True)]))


# The headlines issue 14 found misread, as they appear in data/headlines.yaml (the template
# headline with a ticker filled in).
MISREAD = (
    "Analyst cuts Apple price target, citing slowing iPhone growth",  # was +0.103
    "Facebook stock falls as rising costs squeeze profit margins",  # was +0.402
    "XOM cuts guidance as costs climb",  # was 0.000 (plain VADER -0.296)
)


def test_context_rules_raise_accuracy_on_headlines_tuning_never_saw(plain, capsys):
    """Accuracy of plain VADER, VADER + the finance lexicon (the scoring before the context
    rules) and the scoring now, on the tuning part and on the held-out part of the labelled
    headlines. docs/sentiment.md quotes the table this prints (pytest -s)."""
    lexicon_only = SentimentIntensityAnalyzer()
    lexicon_only.lexicon.update(FINANCE_LEXICON)
    table = {}
    for part in ("tune", "holdout"):
        rows = _split(part)
        titles = [r["headline"] for r in rows]
        table[part] = {
            "plain VADER": _accuracy([plain.polarity_scores(t)["compound"] for t in titles], rows),
            "finance lexicon": _accuracy(
                [lexicon_only.polarity_scores(t)["compound"] for t in titles], rows
            ),
            "lexicon + context rules": _accuracy(score_headlines(titles), rows),
            "headlines": len(rows),
        }
    with capsys.disabled():
        print("\naccuracy (share of headlines classified as labelled)")
        for part, figures in table.items():
            print(
                f"  {part:8} "
                + ", ".join(
                    f"{k} {v:.3f}" if k != "headlines" else f"{k} {v}" for k, v in figures.items()
                )
            )

    holdout = table["holdout"]
    assert holdout["headlines"] >= 90
    assert holdout["lexicon + context rules"] > holdout["finance lexicon"] > holdout["plain VADER"]
    assert table["tune"]["lexicon + context rules"] > table["tune"]["finance lexicon"]
    assert all(score <= NEGATIVE_SENTIMENT for score in score_headlines(MISREAD))


def test_tuning_and_held_out_headlines_do_not_overlap():
    tune = {normalize_headline(r["headline"]) for r in _split("tune")}
    holdout = {normalize_headline(r["headline"]) for r in _split("holdout")}
    assert tune and holdout and not tune & holdout
    assert {r["split"] for r in _labelled()} == {"tune", "holdout"}
    assert {r["label"] for r in _split("holdout")} == {"positive", "negative", "neutral"}


@pytest.mark.parametrize(
    ("headline", "label"),
    [
        ("Retailer did not cut its guidance", "positive"),  # VADER's negation still applies
        ("Maker cuts costs, raises forecast", "positive"),  # a rule stays in its clause
        ("Airline profit climbs as fuel costs fall", "positive"),  # falling costs are good
        ("Insurer's quarterly losses narrow", "positive"),
        ("Bank lowers its price target on the insurer", "negative"),
        ("Guidance lowered at chipmaker", "negative"),  # the passive form
        ("Brokerage raises price target on the retailer", "positive"),
        ("Carmaker to lay off 2,000 workers", "negative"),
        ("Crude oil prices steady ahead of the meeting", "neutral"),
    ],
)
def test_context_rules_read_finance_wording_as_a_reader_would(headline, label):
    assert classify(score_headlines([headline])[0]) == label


def test_context_rules_rewrite_only_the_words_they_apply_to():
    assert apply_context_rules("Analyst cuts Apple price target") == (
        "Analyst cuts_cut_target Apple price target"
    )
    unchanged = "Apple shares surge after iPhone sales top estimates"
    assert apply_context_rules(unchanged) == unchanged
    # Punctuation around a rewritten word is kept for VADER's emphasis rules.
    assert apply_context_rules("Costs climb!") == "Costs climb_costs_up!"


def test_score_headlines_input():
    assert score_headlines([]) == []
    with pytest.raises(TypeError, match="list of headlines"):
        score_headlines("Apple shares surge")


def test_classify_uses_vader_thresholds():
    assert classify(0.05) == "positive"
    assert classify(0.0499) == "neutral"
    assert classify(-0.0499) == "neutral"
    assert classify(-0.05) == "negative"


# --- summaries -----------------------------------------------------------------------------

NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)


def _article(title: str, days_old: float | None, source: str = "test") -> Article:
    published = None if days_old is None else NOW - timedelta(days=days_old)
    return Article(title=title, published=published, source=source, url=f"https://x/{title[:5]}")


def test_summary_counts_duplicates_once_and_classifies():
    articles = [
        _article("Apple shares surge after earnings beat", 0),
        _article("apple shares SURGE after earnings beat!", 1),  # same headline, reformatted
        _article("  Apple shares surge,  after earnings beat ", 2),
        _article("Apple stock plunges on weak guidance", 3),
        _article("Apple to hold annual meeting on Tuesday", 4),
    ]
    summary = summarize_sentiment("AAPL", articles, now=NOW)
    scores = score_headlines([articles[0].title, articles[3].title, articles[4].title])
    assert summary["ticker"] == "AAPL"
    assert summary["article_count"] == 3
    assert summary["duplicates_removed"] == 2
    assert (summary["positive_count"], summary["negative_count"], summary["neutral_count"]) == (
        1,
        1,
        1,
    )
    assert summary["avg_sentiment"] == pytest.approx(sum(scores) / 3)
    assert [a["title"] for a in summary["articles"]] == [
        articles[0].title,
        articles[3].title,
        articles[4].title,
    ]
    first = summary["articles"][0]
    assert first["published"] == NOW.isoformat()
    assert first["source"] == "test" and first["url"].startswith("https://")
    assert first["sentiment"] == pytest.approx(scores[0])


def test_recency_weight_halves_every_seven_days():
    articles = [
        _article("Chipmaker shares soar", 0),
        _article("Chipmaker shares plunge", 7),
        _article("Chipmaker stock falls", 14),
        _article("Chipmaker upgraded", None),  # undated: left out of the weighting
    ]
    s0, s7, s14, _ = score_headlines([a.title for a in articles])
    summary = summarize_sentiment("CHIP", articles, now=NOW)
    assert summary["recency_weighted_sentiment"] == pytest.approx(
        (s0 + 0.5 * s7 + 0.25 * s14) / (1 + 0.5 + 0.25)
    )
    # Only relative ages matter, so years-old sample headlines keep their weights.
    later = summarize_sentiment("CHIP", articles, now=NOW + timedelta(days=5000))
    assert later["recency_weighted_sentiment"] == pytest.approx(
        summary["recency_weighted_sentiment"]
    )


def test_recency_weighting_without_dates_is_the_mean():
    articles = [_article("Stock soars", None), _article("Stock tumbles badly", None)]
    summary = summarize_sentiment("X", articles, now=NOW)
    assert summary["recency_weighted_sentiment"] == pytest.approx(summary["avg_sentiment"])


def test_summary_of_no_articles():
    summary = summarize_sentiment("X", [], now=NOW)
    assert summary["article_count"] == 0
    assert summary["avg_sentiment"] is None and summary["recency_weighted_sentiment"] is None
    assert summary["articles"] == []


def test_article_rejects_bad_fields():
    with pytest.raises(ValueError, match="timezone"):
        Article("Title", datetime(2024, 1, 1), "test")
    with pytest.raises(ValueError, match="non-empty title"):
        Article("   ", None, "test")
    tokyo = datetime(2024, 1, 1, 9, tzinfo=timezone(timedelta(hours=9)))
    published = Article("T", tokyo, "s").published
    assert published.tzinfo == UTC and published.hour == 0


# --- embedded headlines and source order -------------------------------------------------


@pytest.mark.parametrize("ticker", SAMPLE_TICKERS)
def test_sample_tickers_have_varied_dated_sample_headlines(ticker):
    articles = EmbeddedNewsSource().fetch(ticker, AnalysisConfig())
    assert 6 <= len(articles) <= 10
    assert all("not real news" in a.publisher for a in articles)
    assert all(a.illustrative and a.source == "embedded" for a in articles)
    dates = [a.published for a in articles]
    assert dates == sorted(dates, reverse=True)  # newest first
    # Dated within the embedded price data, which ends 2013-03-01.
    assert all(
        datetime(2012, 1, 1, tzinfo=UTC) <= d <= datetime(2013, 3, 2, tzinfo=UTC) for d in dates
    )
    classes = {classify(s) for s in score_headlines([a.title for a in articles])}
    assert classes == {"positive", "negative", "neutral"}


def test_other_tickers_get_deterministic_template_headlines():
    source = EmbeddedNewsSource()
    first = source.fetch("XOM", AnalysisConfig())
    assert first == source.fetch("XOM", AnalysisConfig())
    assert 3 <= len(first) <= 5
    assert all("XOM" in a.title for a in first)
    others = source.fetch("KO", AnalysisConfig())
    assert [a.title.replace("KO", "") for a in others] != [
        a.title.replace("XOM", "") for a in first
    ]


def test_max_articles_caps_the_list():
    config = AnalysisConfig(max_articles=3)
    assert len(fetch_headlines("AAPL", config)) == 3


class _Failing:
    name = "broken"

    def fetch(self, ticker, config):
        raise NewsSourceError("HTTP 503 from the test")


class _Empty:
    name = "empty"

    def fetch(self, ticker, config):
        return []


def test_first_source_with_articles_wins():
    config = AnalysisConfig(news_sources=("yfinance", "rss", "embedded"))
    sources = {"yfinance": _Failing(), "rss": _Empty(), "embedded": EmbeddedNewsSource()}
    articles = fetch_headlines("MSFT", config, sources=sources)
    assert articles and {a.source for a in articles} == {"embedded"}


def test_no_articles_anywhere_is_an_empty_list_but_all_failing_is_an_error():
    config = AnalysisConfig(news_sources=("yfinance", "rss"))
    assert fetch_headlines("MSFT", config, sources={"yfinance": _Failing(), "rss": _Empty()}) == []
    with pytest.raises(NewsUnavailableError, match="HTTP 503") as info:
        fetch_headlines("MSFT", config, sources={"yfinance": _Failing(), "rss": _Failing()})
    assert set(info.value.reasons) == {"yfinance", "rss"}
