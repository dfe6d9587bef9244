"""Reference lists of the commerce domain: countries and their spellings, currencies, names, catalogue.

Every country is written in the OLTP ``customers.country`` column in one of its spellings: the ISO
alpha-2 code upper case ('DE') or lower case ('de'), the English name ('Germany'), or an alias
('Deutschland', 'UK', 'USA'...). The conformed zone maps all of them back to the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._randomness import Weighted


@dataclass(frozen=True)
class Country:
    code: str  # ISO 3166-1 alpha-2
    name: str
    aliases: tuple[str, ...]
    currency: str  # ISO 4217
    phone_prefix: str
    company_suffixes: tuple[str, ...]


COUNTRIES: Weighted[Country] = Weighted(
    [
        (
            Country("US", "United States", ("USA", "United States of America"), "USD", "+1", ("Inc.", "LLC")),
            34,
        ),
        (Country("GB", "United Kingdom", ("UK", "Great Britain"), "GBP", "+44", ("Ltd", "plc")), 14),
        (Country("DE", "Germany", ("Deutschland",), "EUR", "+49", ("GmbH", "AG")), 14),
        (Country("FR", "France", ("République française",), "EUR", "+33", ("SA", "SAS")), 8),
        (Country("NL", "Netherlands", ("The Netherlands", "Holland"), "EUR", "+31", ("BV",)), 5),
        (Country("ES", "Spain", ("España",), "EUR", "+34", ("SL", "SA")), 4),
        (Country("IE", "Ireland", ("Éire",), "EUR", "+353", ("Ltd", "DAC")), 3),
        (Country("CH", "Switzerland", ("Schweiz", "Suisse"), "CHF", "+41", ("AG", "GmbH")), 6),
        (Country("SE", "Sweden", ("Sverige",), "SEK", "+46", ("AB",)), 6),
        (Country("JP", "Japan", ("Nippon",), "JPY", "+81", ("KK",)), 6),
    ]
)

# Approximate units of each currency per euro, to price order lines in the order's currency. Every
# currency except the base (EUR) is a column of the ECB history file.
APPROX_PER_EUR = {"EUR": 1.0, "USD": 1.08, "GBP": 0.86, "CHF": 0.96, "JPY": 160.0, "SEK": 11.3}
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY"})
ORDER_CURRENCIES: Weighted[str] = Weighted(
    [("USD", 40), ("EUR", 30), ("GBP", 15), ("CHF", 5), ("JPY", 5), ("SEK", 5)]
)

FIRST_NAMES = (
    "James", "Mary", "Oliver", "Olivia", "Liam", "Emma", "Noah", "Sophia", "Lucas", "Mia", "Elias",
    "Hannah", "Lukas", "Lea", "Jonas", "Anna", "Hugo", "Chloé", "Louis", "Amélie", "Daan", "Sanne", "Sem",
    "Julia", "José", "Lucía", "Mateo", "Sofía", "Seán", "Siobhán", "Conor", "Aoife", "Luca", "Zoë",
    "Björn", "Astrid", "Søren", "Elin", "Haruto", "Yui", "Sota", "Yuki", "Jürgen", "Renée", "Thomas",
    "Sarah", "William", "Grace",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor", "Clark",
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Martin", "Bernard", "Dubois", "Lefèvre",
    "de Vries", "Jansen", "van den Berg", "García", "Fernández", "Núñez", "O'Brien", "Murphy", "Kelly",
    "Keller", "Meier", "Andersson", "Johansson", "Lindqvist", "Sato", "Suzuki", "Takahashi", "Watanabe",
    "Rossi", "Nowak", "Øberg",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example", "post.example")

TITLES = (
    "Buyer", "Procurement Manager", "CFO", "Head of Operations", "Office Manager", "CEO", "IT Director",
    "Purchasing Assistant", "Store Manager", "Category Manager",
)  # fmt: skip
INDUSTRIES = (
    "Retail", "Manufacturing", "Software", "Healthcare", "Finance", "Logistics", "Hospitality",
    "Education", "Media", "Energy",
)  # fmt: skip
COMPANY_FIRST = (
    "Blue", "North", "Silver", "Bright", "Green", "Iron", "Summit", "Harbor", "Pioneer", "Crescent",
    "Atlas", "Maple", "Cedar", "Nordic", "Alpine", "Coastal",
)  # fmt: skip
COMPANY_SECOND = (
    "Ridge", "Works", "Labs", "Systems", "Trading", "Goods", "Partners", "Dynamics", "Supply", "Studio",
    "Foods", "Logistics", "Retail", "Outfitters",
)  # fmt: skip


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    min_price: float
    max_price: float
    nouns: tuple[str, ...]


CATEGORIES: Weighted[Category] = Weighted(
    [
        (Category("APP", "Apparel", 9, 180, ("T-Shirt", "Hoodie", "Jacket", "Jeans", "Scarf", "Cap")), 18),
        (Category("SHO", "Footwear", 25, 260, ("Sneakers", "Boots", "Sandals", "Loafers")), 10),
        (
            Category(
                "ELE", "Electronics", 15, 1500, ("Headphones", "Speaker", "Charger", "Smartwatch", "Monitor")
            ),
            14,
        ),
        (
            Category(
                "HOM", "Home & Kitchen", 6, 400, ("Kettle", "Pan", "Mug", "Lamp", "Blanket", "Knife Set")
            ),
            14,
        ),
        (
            Category(
                "SPO", "Sports", 8, 600, ("Yoga Mat", "Dumbbell", "Tennis Racket", "Water Bottle", "Helmet")
            ),
            10,
        ),
        (Category("BEA", "Beauty", 5, 90, ("Shampoo", "Face Cream", "Lip Balm", "Perfume")), 8),
        (Category("TOY", "Toys", 6, 120, ("Puzzle", "Board Game", "Plush Bear", "Building Set")), 8),
        (Category("BOO", "Books", 8, 60, ("Cookbook", "Novel", "Travel Guide", "Notebook")), 6),
        (Category("GAR", "Garden", 5, 400, ("Hose", "Planter", "Seed Kit", "Pruner")), 5),
        (Category("OFF", "Office", 3, 700, ("Desk Chair", "Pen Set", "Desk Lamp", "Organizer")), 7),
    ]
)
PRODUCT_ADJECTIVES = (
    "Classic", "Premium", "Eco", "Compact", "Deluxe", "Everyday", "Pro", "Ultra", "Vintage", "Smart",
    "Organic", "Lightweight",
)  # fmt: skip
PRODUCT_COLOURS = ("Black", "White", "Navy", "Red", "Olive", "Grey", "Sand", "Teal")

# Real user agents contain commas; a few made-up ones add double quotes, '<' and '&' so that CSV
# quoting and XML escaping are exercised.
USER_AGENTS: Weighted[str] = Weighted(
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36",
            40,
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.4 Mobile/15E148 Safari/604.1",
            25,
        ),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0", 15),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Mobile Safari/537.36",
            12,
        ),
        ('ShopApp/3.2 (Android 14; "Galaxy S24", build 2024.05)', 4),
        ('Mozilla/5.0 (compatible; "PartnerBot"/1.1; +https://partner.example/bot)', 2),
        ("InternalMonitor/1.0 <synthetic> & checks", 1),
        ("curl/8.5.0", 1),
    ]
)
SEARCH_TERMS = (
    "wool socks", "red, blue sneakers", "usb-c charger", "yoga mat", "coffee & tea", "kids' puzzle",
    "café table", "rain jacket", "desk lamp", "gift ideas",
)  # fmt: skip
