"""Static reference data for the demo generator: French places, the 40 stores, the product catalogue,
names, job titles and lifestyle tags.

Everything here is fixed (it does not depend on the generator's seed), so store ``S012`` is the
same store — Paris Bercy — in every generated data set, and rules written against it in tests and
docs keep working.  Names and jobs are kept in plain lists instead of using Faker: the generator
picks them with vectorised numpy indexing, which Faker's per-row calls cannot do at 1M customers.
Coordinates and postcodes are real-ish (right city, right arrondissement or commune code).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date

REFERENCE_DATE = date(2026, 6, 30)
"""The last day of generated history; every file ends here, so outputs are reproducible."""

HISTORY_START = date(2021, 7, 1)
"""The first day of generated history (five years before the reference date)."""

COUNTRY = "FR"
TIMEZONE = "Europe/Paris"
CURRENCY = "EUR"


@dataclass(frozen=True)
class City:
    """One of the eight store cities: centre, postcodes and weight among urban customers."""

    name: str
    lat: float
    lon: float
    postcodes: tuple[str, ...]
    weight: float


CITIES: tuple[City, ...] = (
    City("Paris", 48.8566, 2.3522, tuple(f"750{i:02d}" for i in range(1, 21)), 0.40),
    City("Lyon", 45.7640, 4.8357, tuple(f"6900{i}" for i in range(1, 10)), 0.12),
    City("Marseille", 43.2965, 5.3698, tuple(f"130{i:02d}" for i in range(1, 17)), 0.10),
    City("Toulouse", 43.6047, 1.4442, ("31000", "31100", "31200", "31300", "31400", "31500"), 0.08),
    City("Bordeaux", 44.8378, -0.5792, ("33000", "33100", "33200", "33300", "33800"), 0.09),
    City("Lille", 50.6292, 3.0573, ("59000", "59160", "59260", "59777", "59800"), 0.07),
    City("Nantes", 47.2184, -1.5536, ("44000", "44100", "44200", "44300"), 0.07),
    City("Strasbourg", 48.5734, 7.7521, ("67000", "67100", "67200"), 0.07),
)


@dataclass(frozen=True)
class Store:
    """A physical store in one of the eight cities."""

    store_id: str
    name: str
    city: str
    postcode: str
    lat: float
    lon: float


_STORE_ROWS: tuple[tuple[str, str, str, float, float], ...] = (
    # city, neighbourhood, postcode, lat, lon
    ("Paris", "Châtelet", "75001", 48.8585, 2.3470),
    ("Paris", "Bastille", "75011", 48.8532, 2.3691),
    ("Paris", "Montparnasse", "75014", 48.8422, 2.3211),
    ("Paris", "Opéra", "75009", 48.8708, 2.3318),
    ("Paris", "République", "75010", 48.8675, 2.3634),
    ("Paris", "Saint-Lazare", "75008", 48.8763, 2.3253),
    ("Paris", "Nation", "75012", 48.8483, 2.3958),
    ("Paris", "Place d'Italie", "75013", 48.8310, 2.3555),
    ("Paris", "Montmartre", "75018", 48.8867, 2.3431),
    ("Paris", "Batignolles", "75017", 48.8848, 2.3190),
    ("Paris", "Passy", "75016", 48.8575, 2.2850),
    ("Paris", "Bercy", "75012", 48.8399, 2.3828),
    ("Lyon", "Bellecour", "69002", 45.7578, 4.8320),
    ("Lyon", "Part-Dieu", "69003", 45.7606, 4.8590),
    ("Lyon", "Croix-Rousse", "69004", 45.7745, 4.8316),
    ("Lyon", "Confluence", "69002", 45.7413, 4.8185),
    ("Lyon", "Vieux Lyon", "69005", 45.7622, 4.8270),
    ("Lyon", "Gerland", "69007", 45.7270, 4.8330),
    ("Marseille", "Vieux-Port", "13001", 43.2951, 5.3740),
    ("Marseille", "Castellane", "13006", 43.2858, 5.3838),
    ("Marseille", "La Joliette", "13002", 43.3040, 5.3660),
    ("Marseille", "Prado", "13008", 43.2720, 5.3880),
    ("Marseille", "Saint-Charles", "13001", 43.3027, 5.3800),
    ("Toulouse", "Capitole", "31000", 43.6045, 1.4440),
    ("Toulouse", "Saint-Cyprien", "31300", 43.5980, 1.4310),
    ("Toulouse", "Compans-Caffarelli", "31000", 43.6110, 1.4350),
    ("Toulouse", "Rangueil", "31400", 43.5750, 1.4600),
    ("Bordeaux", "Sainte-Catherine", "33000", 44.8400, -0.5740),
    ("Bordeaux", "Chartrons", "33000", 44.8540, -0.5700),
    ("Bordeaux", "Mériadeck", "33000", 44.8380, -0.5850),
    ("Bordeaux", "Bastide", "33100", 44.8420, -0.5580),
    ("Lille", "Grand-Place", "59000", 50.6370, 3.0635),
    ("Lille", "Euralille", "59000", 50.6380, 3.0750),
    ("Lille", "Wazemmes", "59000", 50.6260, 3.0500),
    ("Nantes", "Commerce", "44000", 47.2130, -1.5580),
    ("Nantes", "Île de Nantes", "44200", 47.2070, -1.5500),
    ("Nantes", "Talensac", "44000", 47.2230, -1.5570),
    ("Strasbourg", "Kléber", "67000", 48.5835, 7.7455),
    ("Strasbourg", "Krutenau", "67000", 48.5800, 7.7580),
    ("Strasbourg", "Neudorf", "67100", 48.5700, 7.7600),
)

STORES: tuple[Store, ...] = tuple(
    Store(f"S{i:03d}", f"{city} {name}", city, postcode, lat, lon)
    for i, (city, name, postcode, lat, lon) in enumerate(_STORE_ROWS, start=1)
)


@dataclass(frozen=True)
class Place:
    """A suburb or small town outside the city centres where customers live (no store there)."""

    name: str
    kind: str  # "suburb" (3–25 km from a store) or "town" (16–55 km, customers scattered rurally)
    postcode: str
    lat: float
    lon: float
    radius_km: float


PLACES: tuple[Place, ...] = (
    Place("Saint-Denis", "suburb", "93200", 48.9362, 2.3574, 2.0),
    Place("Créteil", "suburb", "94000", 48.7904, 2.4556, 2.0),
    Place("Argenteuil", "suburb", "95100", 48.9472, 2.2467, 2.5),
    Place("Versailles", "suburb", "78000", 48.8049, 2.1204, 2.5),
    Place("Nanterre", "suburb", "92000", 48.8924, 2.2071, 2.0),
    Place("Évry-Courcouronnes", "suburb", "91000", 48.6290, 2.4410, 3.0),
    Place("Cergy", "suburb", "95000", 49.0364, 2.0761, 3.0),
    Place("Vénissieux", "suburb", "69200", 45.6973, 4.8859, 2.0),
    Place("Aubagne", "suburb", "13400", 43.2927, 5.5708, 2.5),
    Place("Blagnac", "suburb", "31700", 43.6373, 1.3900, 1.5),
    Place("Muret", "suburb", "31600", 43.4617, 1.3270, 2.5),
    Place("Mérignac", "suburb", "33700", 44.8386, -0.6436, 1.5),
    Place("Pessac", "suburb", "33600", 44.8067, -0.6311, 1.5),
    Place("Roubaix", "suburb", "59100", 50.6942, 3.1746, 2.0),
    Place("Tourcoing", "suburb", "59200", 50.7239, 3.1612, 2.0),
    Place("Villeneuve-d'Ascq", "suburb", "59650", 50.6233, 3.1450, 1.5),
    Place("Saint-Herblain", "suburb", "44800", 47.2122, -1.6497, 2.5),
    Place("Illkirch-Graffenstaden", "suburb", "67400", 48.5297, 7.7156, 2.0),
    Place("Meaux", "town", "77100", 48.9601, 2.8788, 6.0),
    Place("Rambouillet", "town", "78120", 48.6437, 1.8296, 8.0),
    Place("Melun", "town", "77000", 48.5397, 2.6553, 6.0),
    Place("Villefranche-sur-Saône", "town", "69400", 45.9899, 4.7186, 6.0),
    Place("Vienne", "town", "38200", 45.5255, 4.8743, 6.0),
    Place("Aix-en-Provence", "town", "13100", 43.5297, 5.4474, 5.0),
    Place("Martigues", "town", "13500", 43.4053, 5.0475, 6.0),
    Place("Montauban", "town", "82000", 44.0176, 1.3550, 6.0),
    Place("Libourne", "town", "33500", 44.9153, -0.2439, 8.0),
    Place("Arcachon", "town", "33120", 44.6586, -1.1689, 6.0),
    Place("Lens", "town", "62300", 50.4322, 2.8333, 6.0),
    Place("Saint-Nazaire", "town", "44600", 47.2735, -2.2138, 6.0),
    Place("Haguenau", "town", "67500", 48.8156, 7.7906, 6.0),
    Place("Sélestat", "town", "67600", 48.2594, 7.4542, 8.0),
)


@dataclass(frozen=True)
class Category:
    """A product category: whether it is bought repeatedly, its price range and product nouns."""

    name: str
    repeatable: bool
    price_min: float
    price_max: float
    extra_quantity: float  # mean of (quantity - 1) per order line: consumables come in multiples
    nouns: tuple[str, ...]


CATEGORIES: tuple[Category, ...] = (
    Category("electronics", False, 30, 1500, 0.0, (
        "Headphones", "Smartphone", "Tablet", "Laptop", "Smartwatch", "Speaker", "Camera", "Monitor",
        "E-reader", "Router", "Keyboard", "Drone")),
    Category("furniture", False, 60, 1200, 0.0, (
        "Sofa", "Armchair", "Desk", "Bookcase", "Dining Table", "Bed Frame", "Wardrobe", "Office Chair",
        "Coffee Table", "Sideboard", "Shelf", "Stool")),
    Category("home", True, 8, 120, 0.2, (
        "Cookware Set", "Bath Towels", "Bedding Set", "Table Lamp", "Storage Box", "Cushion", "Candle",
        "Vase", "Knife Set", "Frying Pan", "Teapot", "Rug")),
    Category("fashion", True, 15, 180, 0.1, (
        "T-shirt", "Jeans", "Sneakers", "Jacket", "Dress", "Sweater", "Scarf", "Handbag", "Boots",
        "Shirt", "Coat", "Belt")),
    Category("sports", True, 10, 250, 0.1, (
        "Running Shoes", "Yoga Mat", "Dumbbells", "Tennis Racket", "Cycling Helmet", "Sports Bra",
        "Water Bottle", "Fitness Band", "Football", "Swim Goggles", "Jump Rope", "Running Tights")),
    Category("outdoor", True, 15, 350, 0.1, (
        "Tent", "Sleeping Bag", "Hiking Backpack", "Trekking Poles", "Headlamp", "Rain Jacket",
        "Camping Stove", "Hiking Boots", "Compass", "Hammock", "Fleece", "Thermos")),
    Category("eco", True, 4, 45, 0.5, (
        "Refill Detergent", "Bamboo Toothbrush", "Beeswax Wraps", "Solid Shampoo", "Reusable Bottle",
        "Organic Soap", "Compost Bags", "Cotton Tote", "Refill Cleaner", "Loofah Sponge",
        "Reusable Straws", "Natural Deodorant")),
    Category("beauty", True, 5, 70, 0.4, (
        "Face Cream", "Lipstick", "Shower Gel", "Perfume", "Sunscreen", "Hair Mask", "Mascara",
        "Body Lotion", "Nail Polish", "Serum", "Hand Cream", "Shampoo")),
    Category("grocery", True, 1.5, 25, 1.0, (
        "Coffee Beans", "Olive Oil", "Pasta", "Chocolate", "Tea", "Honey", "Cereal", "Jam", "Rice",
        "Wine", "Biscuits", "Cheese")),
    Category("books", True, 6, 40, 0.2, (
        "Novel", "Cookbook", "Travel Guide", "Comic", "Biography", "Children's Book", "Thriller",
        "Poetry", "Art Book", "Essay", "Atlas", "Notebook")),
    Category("toys", True, 5, 80, 0.2, (
        "Puzzle", "Board Game", "Building Blocks", "Doll", "Toy Car", "Plush", "Card Game",
        "Science Kit", "Kite", "Train Set", "Marble Run", "Yo-yo")),
    Category("clearance", True, 2, 30, 0.6, (
        "Outlet T-shirt", "End-of-line Mug", "Last-season Cap", "Discount Socks", "Outlet Sneakers",
        "Ex-display Lamp", "Clearance Tote", "Outlet Scarf", "Overstock Candle", "Bargain Notebook",
        "Outlet Gloves", "Clearance Towel")),
)
CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)

PRODUCTS_PER_CATEGORY = 30
PRODUCT_ADJECTIVES: tuple[str, ...] = (
    "Classic", "Essential", "Premium", "Compact", "Urban", "Nordic", "Organic", "Pro", "Lite", "Heritage",
    "Studio", "Everyday", "Signature", "Natural", "Smart",
)

FIRST_NAMES_F: tuple[str, ...] = (
    "Camille", "Léa", "Manon", "Chloé", "Emma", "Inès", "Sarah", "Jade", "Louise", "Alice", "Lina",
    "Zoé", "Juliette", "Clara", "Anna", "Rose", "Ambre", "Mila", "Lou", "Agathe", "Margaux", "Pauline",
    "Marie", "Julie", "Laura", "Mathilde", "Élise", "Charlotte", "Lucie", "Océane", "Anaïs", "Céline",
    "Nathalie", "Isabelle", "Sandrine", "Sophie", "Valérie", "Christine", "Catherine", "Sylvie",
    "Monique", "Françoise", "Martine", "Nicole", "Hélène", "Brigitte", "Claire", "Aurélie", "Émilie",
    "Fatima", "Yasmine", "Amina", "Nadia", "Aïcha", "Mélanie", "Audrey", "Justine", "Morgane", "Elodie",
    "Solène",
)
FIRST_NAMES_M: tuple[str, ...] = (
    "Lucas", "Hugo", "Louis", "Gabriel", "Arthur", "Jules", "Adam", "Raphaël", "Léo", "Nathan", "Paul",
    "Tom", "Théo", "Noah", "Ethan", "Maël", "Sacha", "Nolan", "Victor", "Baptiste", "Antoine",
    "Thomas", "Nicolas", "Julien", "Maxime", "Alexandre", "Quentin", "Romain", "Kevin", "Mathieu",
    "Pierre", "Jean", "Philippe", "Michel", "Alain", "Patrick", "Christophe", "Laurent", "Stéphane",
    "Olivier", "Éric", "Frédéric", "Didier", "Bernard", "Daniel", "Jacques", "François", "Sébastien",
    "Mohamed", "Karim", "Mehdi", "Yanis", "Samir", "Rayan", "Bruno", "Cédric", "Damien", "Guillaume",
    "Jérôme", "Vincent",
)
LAST_NAMES: tuple[str, ...] = (
    "Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau", "Laurent",
    "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David", "Bertrand", "Morel", "Fournier", "Girard",
    "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent", "Muller", "Lefebvre", "Faure",
    "André", "Mercier", "Blanc", "Guérin", "Boyer", "Garnier", "Chevalier", "François", "Legrand",
    "Gauthier", "Garcia", "Perrin", "Robin", "Clément", "Morin", "Nicolas", "Henry", "Roussel",
    "Mathieu", "Gautier", "Masson", "Marchand", "Duval", "Denis", "Dumont", "Marie", "Lemaire", "Noël",
    "Meyer", "Dufour", "Meunier", "Brun", "Blanchard", "Giraud", "Joly", "Rivière", "Lucas", "Brunet",
    "Gaillard", "Barbier", "Arnaud", "Martinez", "Gérard", "Roche", "Renard", "Schmitt", "Roy",
    "Leroux", "Colin", "Vidal", "Caron", "Picard", "Roger", "Fabre", "Aubert", "Lemoine", "Renaud",
    "Dumas", "Lacroix", "Olivier", "Philippe", "Bourgeois", "Pierre", "Benoît", "Rey", "Leclerc",
    "Payet", "Rolland", "Leclercq", "Guillaume", "Lecomte", "N'Diaye", "Benali", "Nguyen", "Haddad",
)
JOB_TITLES: tuple[str, ...] = (
    "Software Developer", "Data Analyst", "Nurse", "Teacher", "Accountant", "Sales Representative",
    "Project Manager", "Graphic Designer", "Pharmacist", "Electrician", "Chef", "Architect",
    "Marketing Manager", "Civil Servant", "Lawyer", "Physician", "Engineer", "Retail Assistant",
    "Bank Advisor", "Journalist", "Photographer", "Plumber", "Consultant", "Researcher", "Student",
    "Retired", "Entrepreneur", "Physiotherapist", "Police Officer", "Mechanic", "Baker", "Farmer",
    "Real Estate Agent", "HR Manager", "Customer Service Agent", "Logistics Coordinator", "Librarian",
    "Translator", "Veterinarian", "Dentist", "Social Worker", "Product Manager", "UX Designer",
    "Hairdresser", "Driver", "Warehouse Operative", "Carpenter", "Office Manager", "Musician",
    "Executive Assistant",
)
EMAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com", "orange.fr", "free.fr", "hotmail.fr", "yahoo.fr", "outlook.fr", "laposte.net",
    "sfr.fr", "icloud.com", "proton.me",
)
EMAIL_DOMAIN_WEIGHTS: tuple[float, ...] = (0.38, 0.14, 0.1, 0.09, 0.07, 0.07, 0.05, 0.04, 0.04, 0.02)

INTEREST_TAGS: tuple[str, ...] = (
    "eco", "running", "outdoor", "cycling", "vegan", "yoga", "hiking", "zero-waste",  # 0-7
    "travel", "wine", "golf", "tech", "design", "gastronomy",  # 8-13
    "cooking", "gardening", "reading", "family", "local-shops", "crafts",  # 14-19
    "deals", "fashion", "diy", "gaming",  # 20-23
    "photography", "music", "cinema", "football", "pets", "home-decor",  # 24-29
)


def ascii_slug(text: str) -> str:
    """Lower-case ASCII form of a name for e-mail local parts ("Lefèvre" -> "lefevre")."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    return "".join(ch for ch in plain if ch.isalnum() or ch == "-")
