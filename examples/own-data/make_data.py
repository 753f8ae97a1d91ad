"""Writes the two example sources of the README's "Bring your own data" walk-through (seeded, no downloads).

ratings/: a MovieLens-style ratings file (userId,movieId,rating,timestamp in epoch seconds) and its movie list;
shop/: a shop's order lines (semicolon separated, decimal commas, local time, no item ids: products by name).
Customers have favourite genres / product lines, so the recommenders have something to learn.
"""

from __future__ import annotations

import csv
import gzip
import random
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).parent / "data"
GENRES = ["Comedy", "Drama", "Thriller", "Animation", "Documentary", "Sci-Fi"]
LINES = {"Mug": 6.5, "Teapot": 24.0, "Candle": 8.9, "Notebook": 4.2, "Tote Bag": 12.0, "Poster": 15.5}
COLOURS = ["Red", "Blue", "Green", "Ivory", "Black", "Ochre", "Teal", "Plum"]
START = datetime(2025, 1, 1)
DAYS = 300


def _pick(rng: random.Random, pool: list, favourites: list, bias: float):
    return rng.choice(favourites if rng.random() < bias else pool)


def ratings(rng: random.Random) -> None:
    movies = [(i, f"{rng.choice(['The', 'A', 'Last', 'Night', 'Blue', 'Silent'])} "
                  f"{rng.choice(['River', 'Garden', 'Signal', 'Voyage', 'Harbour', 'Echo'])} {i}", GENRES[i % 6])
              for i in range(1, 151)]
    by_genre = {g: [m for m in movies if m[2] == g] for g in GENRES}
    (HERE / "ratings").mkdir(parents=True, exist_ok=True)
    with open(HERE / "ratings" / "movies.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["movieId", "title", "genres"])
        w.writerows(movies)
    rows = []
    for user in range(1, 401):
        liked = rng.sample(GENRES, 2)
        fav = [m for g in liked for m in by_genre[g]]
        seen = set()
        t = START + timedelta(days=rng.uniform(0, DAYS / 2))
        for _ in range(rng.randint(8, 40)):
            movie = _pick(rng, movies, fav, 0.8)
            if movie[0] in seen:
                continue
            seen.add(movie[0])
            t += timedelta(hours=rng.expovariate(1 / 60))
            if t >= START + timedelta(days=DAYS):
                break
            stars = min(5.0, max(0.5, round(rng.gauss(4.2 if movie[2] in liked else 2.8, 0.8) * 2) / 2))
            rows.append((user, movie[0], stars, int(t.timestamp())))
    rows.sort(key=lambda r: r[3])
    with open(HERE / "ratings" / "ratings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        w.writerows(rows)


def orders(rng: random.Random) -> None:
    products = [(f"{line} {colour}", price) for line, price in LINES.items() for colour in COLOURS]
    (HERE / "shop").mkdir(parents=True, exist_ok=True)
    rows = []
    order = 1000
    for client in range(1, 301):
        liked = [p for p in products if p[0].split()[0] in rng.sample(list(LINES), 2)]
        t = START + timedelta(days=rng.uniform(0, DAYS / 2))
        for _ in range(rng.randint(1, 12)):
            t += timedelta(days=rng.expovariate(1 / 20))
            if t >= START + timedelta(days=DAYS):
                break
            order += 1
            for _ in range(rng.randint(1, 4)):
                name, price = _pick(rng, products, liked, 0.75)
                line = (f"SO-{order}", f"K{client:05d}", t.strftime("%d.%m.%Y %H:%M"), name, rng.randint(1, 3),
                        f"{price:.2f}".replace(".", ","))
                rows.append(line)
                if rng.random() < 0.03:
                    rows.append(line)  # the same product scanned twice: two real units, two identical lines
    rows.sort(key=lambda r: datetime.strptime(r[2], "%d.%m.%Y %H:%M"))
    with gzip.open(HERE / "shop" / "orders.csv.gz", "wt", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["Beleg", "Kunde", "Datum", "Artikel", "Menge", "Preis"])
        w.writerows(rows)


if __name__ == "__main__":
    ratings(random.Random(7))
    orders(random.Random(11))
