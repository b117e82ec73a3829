"""Generalist data: synthesized tool catalogs, and conversations that read them from the prompt.

A generalist model is not trained on one catalog: each conversation brings its own 1-5 tools,
listed in the system turn (chat_format.render with `tools`), and the model learns to read the
schemas and call what fits, or to answer in text when nothing does.

    records = generate_generalist(n=800, seed=0)
    write_jsonl(records, "runs/data/generalist.jsonl")     # or: fnedge data generalist --n 800

Catalogs are drawn from CONCEPTS (tool ideas of many domains, written for this module), each
synthesized anew: a name style (snake_case `get_stock_quote`, dotted `finance.stock_quote`,
camelCase `getStockQuote`), parameter names to match, a random subset of the optional
parameters, with or without descriptions. The user's words and the reference call come from the
project's own generator (kinds.single_call over plans built from the schema and per-catalog
hints), so values are said the way the rest of the data says them and every call is validated.

Sample kinds (record "kind"):
  single_call  one tool of the catalog fits; the reply is its call (BFCL "simple"/"multiple")
  irrelevant   a request for a tool idea that is not in the catalog; the reply says so, no call
               (BFCL "irrelevance")
  no_call      chit-chat and questions from the built-in chat hints; a text reply

Each record is the usual conversation record ({"id", "kind", "lang", "tools", "template",
"messages"}) plus `tool_schemas`: the OpenAI tools of its catalog. The trainer, the dataset
encoder and the merge check render `tool_schemas` into the system turn.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from fnedge.catalog import Catalog, parse_catalog
from fnedge.data.config import DataConfig
from fnedge.data.hints import HintSet, load_hints
from fnedge.data.kinds import KINDS, Context, say, user
from fnedge.data.plan import build_plans
from fnedge.data.quality import exact_key, record_problem
from fnedge.errors import FnedgeError

# ---- the concept library ---------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str                      # snake_case; camelCased with a camelCase tool name
    schema: dict[str, Any]         # type, enum, items, bounds, description
    required: bool = True
    pool: tuple[Any, ...] = ()     # said values or [said, value] pairs; empty: the generic filler


@dataclass(frozen=True)
class Concept:
    domain: str                    # namespace of dotted names
    verb: str
    noun: str                      # "stock quote"
    description: str
    params: tuple[Param, ...]
    # phrasings: {"en": [...], "zh": [...], "args": {fixed arguments}}; {param} marks a slot
    templates: tuple[dict[str, Any], ...] = ()
    zh_description: str = ""


def S(name: str, description: str, pool: tuple[Any, ...] = (), required: bool = True) -> Param:
    return Param(name, {"type": "string", "description": description}, required, pool)


def _bounded(kind: str, name: str, description: str, low: float | None, high: float | None,
             required: bool) -> Param:
    bounds = {"minimum": low, "maximum": high}
    schema = {"type": kind, "description": description, **{k: v for k, v in bounds.items() if v is not None}}
    return Param(name, schema, required)


def I(name: str, description: str, low: int | None = None, high: int | None = None,  # noqa: E743
      required: bool = True) -> Param:
    return _bounded("integer", name, description, low, high, required)


def N(name: str, description: str, low: float | None = None, high: float | None = None,
      required: bool = True) -> Param:
    return _bounded("number", name, description, low, high, required)


def B(name: str, description: str) -> Param:
    return Param(name, {"type": "boolean", "description": description}, required=False)


def E(name: str, description: str, values: list[str], required: bool = False) -> Param:
    return Param(name, {"type": "string", "enum": values, "description": description}, required)


def A(name: str, description: str, item_type: str, pool: tuple[Any, ...], required: bool = True) -> Param:
    return Param(name, {"type": "array", "items": {"type": item_type}, "description": description}, required, pool)


CITIES = ("Lisbon", "Denver", "Osaka", "Nairobi", "Toronto", "Madrid", "Seoul", "Oslo", "Lima", "Austin",
          "Prague", "Cairo", "Dublin", "Perth", "Boston", "Munich", "Hanoi", "Quito")
PEOPLE = ("Maria", "Tom Baker", "Priya", "Dr. Chen", "Alex", "Sofia Rossi", "Kenji", "Olga", "Sam Lee")
TICKERS = ("AAPL", "TSLA", "NVDA", "MSFT", "AMZN", "IBM", "ORCL", "SONY")
CURRENCIES = ("USD", "EUR", "JPY", "GBP", "CNY", "CHF", "INR", "BRL")
TOPICS = ("climate policy", "electric cars", "space launches", "chess", "jazz", "vaccines", "AI chips",
          "coral reefs", "the olympics", "remote work")
DISHES = ("lasagna", "pad thai", "banana bread", "miso soup", "chili", "falafel", "risotto", "pancakes")
INGREDIENTS = ("garlic", "tofu", "spinach", "chicken", "rice", "lentils", "mushrooms", "eggs")
TEAMS = ("Lakers", "Arsenal", "Yankees", "Real Madrid", "Celtics", "Bayern Munich", "Chicago Bulls")
BOOKS = ("Dune", "Emma", "Beloved", "Ulysses", "The Hobbit", "Middlemarch", "Neuromancer")
AUTHORS = ("Toni Morrison", "Jane Austen", "Ursula K. Le Guin", "Haruki Murakami", "Chinua Achebe")
SERVICES = ("payments-api", "auth-service", "search-worker", "billing", "web-frontend")
LANGS = ("French", "German", "Japanese", "Spanish", "Korean", "Italian")
ELEMENTS = ("H2O", "NaCl", "C6H12O6", "CO2", "NH3", "CH4", "H2SO4")
SONGS = ("Blue in Green", "Clair de Lune", "Hey Jude", "Take Five", "Bohemian Rhapsody")
PLANTS = ("basil", "tomato", "fern", "orchid", "cactus", "lavender")
COURSES = ("Linear Algebra", "Organic Chemistry", "Intro to Python", "World History", "Microeconomics")
MOVIES = ("Inception", "Parasite", "Spirited Away", "Arrival", "Amelie", "Alien")
FILES = ("report.pdf", "notes.txt", "photo.png", "data.csv", "slides.pptx", "budget.xlsx")

CONCEPTS: tuple[Concept, ...] = (
    Concept("finance", "get", "stock quote", "Get the latest price of a stock by its ticker symbol.",
            (S("ticker", "Ticker symbol, e.g. AAPL.", TICKERS), E("exchange", "Stock exchange.", ["NASDAQ", "NYSE", "LSE"]),
             B("include_history", "Also return the last 30 days of prices.")),
            ({"en": ["what is {ticker} trading at[ on the {exchange}|]", "[get|show] me the [current |]price of {ticker} stock",
                     "how much is one share of {ticker}[ on {exchange}|]"],
              "zh": ["{ticker}现在股价多少", "查一下{ticker}的股价"]},
             {"args": {"include_history": True}, "en": ["show {ticker}'s price and its last month of history"]}),
            "查询股票价格"),
    Concept("finance", "convert", "currency", "Convert an amount of money from one currency to another.",
            (N("amount", "Amount to convert.", 1, 100000), S("from_currency", "Currency code to convert from.", CURRENCIES),
             S("to_currency", "Currency code to convert to.", CURRENCIES)),
            ({"en": ["convert {amount} {from_currency} to {to_currency}", "how much is {amount} {from_currency} in {to_currency}?",
                     "change {amount} {from_currency} into {to_currency} please"],
              "zh": ["把{amount}{from_currency}换成{to_currency}", "{amount} {from_currency}等于多少{to_currency}"]},),
            "货币换算"),
    Concept("finance", "calculate", "loan payment", "Compute the monthly payment of a fixed-rate loan.",
            (N("principal", "Loan amount.", 1000, 900000), N("annual_rate", "Yearly interest rate in percent.", 1, 15),
             I("years", "Loan term in years.", 1, 40)),
            ({"en": ["what's the monthly payment on a {principal} loan at {annual_rate}% for {years} years",
                     "calculate payments for borrowing {principal} over {years} years at {annual_rate} percent interest"]},)),
    Concept("travel", "search", "flights", "Search flights between two cities on a date.",
            (S("origin", "Departure city.", CITIES), S("destination", "Arrival city.", CITIES),
             S("date", "Departure date, YYYY-MM-DD.", ("2025-03-14", "2025-07-01", "2025-11-20", "2026-01-05")),
             I("passengers", "Number of travellers.", 1, 9, required=False), E("cabin", "Cabin class.", ["economy", "business", "first"])),
            ({"en": ["find flights from {origin} to {destination} on {date}", "I need {passengers} seats from {origin} to {destination} on {date}",
                     "search {cabin} flights {origin} to {destination}, leaving {date}"],
              "zh": ["查{date}从{origin}到{destination}的航班", "帮我找{origin}飞{destination}的机票，{date}出发"]},),
            "搜索航班"),
    Concept("travel", "book", "hotel room", "Book a hotel room in a city.",
            (S("city", "City of the hotel.", CITIES), I("nights", "Number of nights.", 1, 30),
             I("guests", "Number of guests.", 1, 8, required=False), B("breakfast", "Include breakfast.")),
            ({"en": ["book a hotel in {city} for {nights} nights", "reserve a room in {city}, {nights} nights, {guests} guests"]},
             {"args": {"breakfast": True}, "en": ["get me a room in {city} for {nights} nights with breakfast"]}),
            "预订酒店"),
    Concept("geo", "compute", "distance", "Distance between two places along the earth's surface.",
            (S("start", "Starting place.", CITIES), S("end", "Destination place.", CITIES),
             E("unit", "Unit of the result.", ["km", "miles"])),
            ({"en": ["how far is {start} from {end}[ in {unit}|]", "distance between {start} and {end}[ in {unit}|]"],
              "zh": ["{start}到{end}有多远", "算一下{start}和{end}之间的距离"]},),
            "计算距离"),
    Concept("geo", "get", "local time", "Current local time in a city.",
            (S("city", "City name.", CITIES), B("use_24h", "Format with a 24-hour clock.")),
            ({"en": ["what time is it in {city}", "current local time in {city}"], "zh": ["{city}现在几点"]},),
            "查询当地时间"),
    Concept("health", "estimate", "calories burned", "Estimate calories burned by an activity.",
            (E("activity", "Kind of exercise.", ["running", "cycling", "swimming", "walking"], required=True),
             I("minutes", "Duration in minutes.", 5, 300), N("weight_kg", "Body weight in kilograms.", 35, 150, required=False)),
            ({"en": ["how many calories do I burn {activity} for {minutes} minutes",
                     "calories burned after {minutes} minutes of {activity} at {weight_kg} kg"],
              "zh": ["{activity}{minutes}分钟消耗多少卡路里"]},),
            "估算消耗的卡路里"),
    Concept("health", "log", "water intake", "Record how much water the user drank.",
            (I("milliliters", "Amount of water in ml.", 50, 3000), S("time", "Time of day, HH:MM.", ("08:30", "12:15", "15:00", "21:45"), required=False)),
            ({"en": ["log {milliliters} ml of water", "I drank {milliliters} ml of water at {time}"]},)),
    Concept("math", "compute", "percentage change", "Percentage change from an old value to a new value.",
            (N("old_value", "The starting value."), N("new_value", "The final value.")),
            ({"en": ["what's the percent change from {old_value} to {new_value}", "percentage increase from {old_value} to {new_value}?"]},)),
    Concept("math", "round", "number", "Round a number to a number of decimal places.",
            (N("value", "Number to round."), I("decimals", "Decimal places to keep.", 0, 10, required=False)),
            ({"en": ["round {value} to {decimals} decimal places", "round {value}"]},)),
    Concept("stats", "compute", "average", "Arithmetic mean of a list of numbers.",
            (A("values", "The numbers.", "number", (("3, 5 and 10", [3, 5, 10]), ("2.5, 4 and 7", [2.5, 4, 7]),
                                                        ("12, 15, 18 and 21", [12, 15, 18, 21]), ("100 and 250", [100, 250]))),),
            ({"en": ["what's the average of {values}", "compute the mean of {values}"], "zh": ["{values}的平均值是多少"]},),
            "计算平均值"),
    Concept("cooking", "find", "recipes", "Find recipes that use the given ingredients.",
            (A("ingredients", "Ingredients to use.", "string", (("garlic and tofu", ["garlic", "tofu"]), ("rice, eggs and spinach", ["rice", "eggs", "spinach"]),
                                                                 ("lentils", ["lentils"]), ("chicken and mushrooms", ["chicken", "mushrooms"]))),
             I("max_minutes", "Longest cooking time in minutes.", 5, 180, required=False),
             E("diet", "Dietary restriction.", ["vegan", "vegetarian", "gluten-free", "none"])),
            ({"en": ["find me a recipe with {ingredients}", "what can I cook with {ingredients} in under {max_minutes} minutes",
                     "any {diet} recipes using {ingredients}?"], "zh": ["用{ingredients}能做什么菜"]},),
            "查找菜谱"),
    Concept("cooking", "scale", "recipe", "Scale a recipe to a number of servings.",
            (S("dish", "Name of the dish.", DISHES), I("servings", "Number of servings.", 1, 40)),
            ({"en": ["scale the {dish} recipe to {servings} servings", "I need {dish} for {servings} people"]},)),
    Concept("sports", "get", "team schedule", "Upcoming games of a sports team.",
            (S("team", "Team name.", TEAMS), I("count", "How many games to list.", 1, 20, required=False)),
            ({"en": ["when do the {team} play next", "show the next {count} games of {team}"], "zh": ["{team}下一场比赛什么时候"]},),
            "查询球队赛程"),
    Concept("music", "create", "playlist", "Create a playlist from songs.",
            (S("name", "Playlist name.", ("road trip", "focus", "gym mix", "rainy day", "party")),
             A("songs", "Song titles.", "string", (("Take Five and Hey Jude", ["Take Five", "Hey Jude"]), ("Clair de Lune", ["Clair de Lune"]),
                                                  ("Blue in Green and Bohemian Rhapsody", ["Blue in Green", "Bohemian Rhapsody"]))),
             B("public", "Whether others can see it.")),
            ({"en": ["make a playlist called {name} with {songs}", "create a '{name}' playlist containing {songs}"]},)),
    Concept("shop", "track", "order", "Shipping status of an order.",
            (S("order_id", "Order number.", ("A-10293", "88120", "ZX-551", "40017-B", "ORD-7731")),),
            ({"en": ["where is my order {order_id}", "track order {order_id}"], "zh": ["我的订单{order_id}到哪了"]},),
            "查询订单物流"),
    Concept("shop", "search", "products", "Search the store's products.",
            (S("query", "What to look for.", ("running shoes", "usb-c cable", "desk lamp", "yoga mat", "coffee grinder")),
             N("max_price", "Highest price.", 5, 2000, required=False), E("sort", "Sort order.", ["price", "rating", "newest"])),
            ({"en": ["search for {query} under {max_price} dollars", "find {query} sorted by {sort}", "look up {query}"],
              "zh": ["搜一下{query}"]},),
            "搜索商品"),
    Concept("environment", "get", "air quality", "Air quality index of a city.",
            (S("city", "City name.", CITIES), B("forecast", "Include tomorrow's forecast.")),
            ({"en": ["how is the air quality in {city}", "AQI for {city}"], "zh": ["{city}空气质量怎么样"]},),
            "查询空气质量"),
    Concept("library", "find", "books", "Find books by an author.",
            (S("author", "Author's name.", AUTHORS), I("limit", "Maximum number of results.", 1, 50, required=False),
             E("format", "Edition format.", ["ebook", "paperback", "audiobook"])),
            ({"en": ["find books by {author}", "list {limit} {format} titles by {author}"]},)),
    Concept("library", "renew", "loan", "Renew a borrowed book.",
            (S("title", "Book title.", BOOKS), I("weeks", "Extra weeks.", 1, 4, required=False)),
            ({"en": ["renew {title} for {weeks} weeks", "please renew my copy of {title}"]},)),
    Concept("realestate", "estimate", "rent", "Estimate monthly rent for an apartment.",
            (S("city", "City.", CITIES), I("bedrooms", "Number of bedrooms.", 0, 6), N("area_sqm", "Floor area in square meters.", 15, 400, required=False)),
            ({"en": ["what's the rent for a {bedrooms} bedroom in {city}", "estimate rent in {city} for {area_sqm} square meters, {bedrooms} bedrooms"]},)),
    Concept("transit", "get", "bus arrivals", "Next arrivals at a bus stop.",
            (S("stop_id", "Stop code.", ("1042", "B17", "88-3", "K9", "5521")), S("route", "Route number.", ("12", "7A", "X1", "40"), required=False)),
            ({"en": ["when is the next bus at stop {stop_id}", "next route {route} bus at {stop_id}"], "zh": ["{stop_id}站下一班公交什么时候到"]},),
            "查询公交到站"),
    Concept("calendar", "schedule", "meeting", "Put a meeting on the calendar.",
            (S("title", "Meeting title.", ("budget review", "1:1", "design sync", "standup", "lunch")),
             S("start_time", "Start, YYYY-MM-DD HH:MM.", ("2025-05-02 10:00", "2025-06-11 14:30", "2025-09-09 09:15")),
             I("duration_minutes", "Length in minutes.", 15, 240, required=False), A("attendees", "People to invite.", "string",
                                                                                       (("Maria", ["Maria"]), ("Priya and Alex", ["Priya", "Alex"]), ("Kenji, Olga and Sam Lee", ["Kenji", "Olga", "Sam Lee"])), required=False)),
            ({"en": ["schedule a {title} at {start_time}", "set up a {duration_minutes} minute {title} on {start_time} with {attendees}"]},)),
    Concept("mail", "send", "email", "Send an email.",
            (S("to", "Recipient address.", ("maria@example.com", "team@corp.io", "sam.lee@mail.net", "ops@startup.dev")),
             S("subject", "Subject line.", ("invoice", "weekend plans", "quarterly numbers", "meeting notes")),
             S("body", "Message text.", ("see you at 5", "the file is attached", "thanks for your help", "running late")),
             B("urgent", "Mark as high priority.")),
            ({"en": ["email {to} with subject {subject} saying {body}", "send a mail to {to}: subject '{subject}', text '{body}'"],
              "zh": ["给{to}发邮件，主题{subject}，内容是{body}"]},),
            "发送邮件"),
    Concept("files", "compress", "files", "Put files into a zip archive.",
            (A("paths", "Files to add.", "string", (("report.pdf and notes.txt", ["report.pdf", "notes.txt"]), ("data.csv", ["data.csv"]),
                                                   ("photo.png, slides.pptx and budget.xlsx", ["photo.png", "slides.pptx", "budget.xlsx"]))),
             S("archive_name", "Name of the zip file.", ("backup.zip", "share.zip", "q3.zip"))),
            ({"en": ["zip {paths} into {archive_name}", "compress {paths} as {archive_name}"]},)),
    Concept("devops", "restart", "service", "Restart a running service.",
            (S("service", "Service name.", SERVICES), E("environment", "Where it runs.", ["staging", "production"], required=True),
             B("drain", "Let open requests finish first.")),
            ({"en": ["restart {service} in {environment}", "bounce the {service} service on {environment}"]},)),
    Concept("devops", "scale", "deployment", "Set the replica count of a deployment.",
            (S("deployment", "Deployment name.", SERVICES), I("replicas", "Desired replicas.", 0, 50)),
            ({"en": ["scale {deployment} to {replicas} replicas", "run {replicas} instances of {deployment}"]},)),
    Concept("language", "translate", "text", "Translate text into another language.",
            (S("text", "Text to translate.", ("good morning", "where is the station", "thank you very much", "the meeting is cancelled")),
             S("target_language", "Language to translate into.", LANGS)),
            ({"en": ["translate '{text}' into {target_language}", "how do you say {text} in {target_language}"],
              "zh": ["把“{text}”翻译成{target_language}"]},),
            "翻译文本"),
    Concept("news", "get", "headlines", "Latest news headlines on a topic.",
            (S("topic", "Subject of the news.", TOPICS), I("max_results", "How many headlines.", 1, 20, required=False)),
            ({"en": ["latest news about {topic}", "give me {max_results} headlines on {topic}"], "zh": ["最近关于{topic}的新闻"]},),
            "获取新闻"),
    Concept("cinema", "find", "showtimes", "Showtimes of a movie in a city.",
            (S("movie", "Movie title.", MOVIES), S("city", "City.", CITIES), S("date", "Date, YYYY-MM-DD.", ("2025-04-18", "2025-08-02", "2025-12-24"), required=False)),
            ({"en": ["when is {movie} showing in {city}", "showtimes for {movie} in {city} on {date}"]},)),
    Concept("astronomy", "get", "sunrise", "Sunrise and sunset times for a place and date.",
            (S("location", "Place.", CITIES), S("date", "Date, YYYY-MM-DD.", ("2025-06-21", "2025-12-21", "2025-03-20"), required=False)),
            ({"en": ["when does the sun rise in {location}", "sunrise in {location} on {date}"], "zh": ["{location}几点日出"]},),
            "查询日出时间"),
    Concept("chemistry", "compute", "molar mass", "Molar mass of a chemical formula.",
            (S("formula", "Chemical formula.", ELEMENTS), E("unit", "Result unit.", ["g/mol", "kg/mol"])),
            ({"en": ["what is the molar mass of {formula}", "molar mass of {formula} in {unit}"]},)),
    Concept("garden", "plan", "watering", "Watering plan for a plant.",
            (S("plant", "Plant name.", PLANTS), E("climate", "Local climate.", ["dry", "temperate", "humid"]), B("indoor", "Kept indoors.")),
            ({"en": ["how often should I water my {plant}", "watering schedule for {plant} in a {climate} climate"], "zh": ["{plant}多久浇一次水"]},),
            "制定浇水计划"),
    Concept("school", "lookup", "course", "Details of a course in the catalog.",
            (S("course_name", "Course title.", COURSES), I("year", "Academic year.", 2020, 2030, required=False)),
            ({"en": ["tell me about the {course_name} course", "is {course_name} offered in {year}"]},)),
    Concept("hr", "request", "time off", "Request days off work.",
            (S("start_date", "First day off, YYYY-MM-DD.", ("2025-07-14", "2025-10-01", "2025-12-22")), I("days", "Number of days.", 1, 30),
             E("reason", "Kind of leave.", ["vacation", "sick", "personal"])),
            ({"en": ["request {days} days off from {start_date}", "I want {days} days of {reason} leave starting {start_date}"],
              "zh": ["从{start_date}开始请{days}天假"]},),
            "请假"),
    Concept("home", "set", "fan speed", "Set the speed of a ceiling fan.",
            (S("room", "Room of the fan.", ("bedroom", "office", "living room", "porch")), I("level", "Speed level.", 0, 5)),
            ({"en": ["set the {room} fan to level {level}", "fan in the {room} on speed {level}"], "zh": ["把{room}的风扇调到{level}档"]},),
            "设置风扇转速"),
    Concept("social", "post", "status", "Publish a status update.",
            (S("message", "Text of the post.", ("just finished a marathon", "new blog post is up", "happy friday everyone")),
             A("tags", "Hashtags.", "string", (("travel", ["travel"]), ("running and health", ["running", "health"])), required=False)),
            ({"en": ["post '{message}'", "share a status saying {message} with tags {tags}"]},)),
    Concept("pets", "book", "vet visit", "Book an appointment at the vet.",
            (S("pet_name", "Pet's name.", ("Biscuit", "Luna", "Max", "Pepper", "Mochi")), S("date", "Date, YYYY-MM-DD.", ("2025-02-03", "2025-05-19", "2025-09-30")),
             E("species", "Kind of animal.", ["dog", "cat", "rabbit", "bird"])),
            ({"en": ["book a vet appointment for {pet_name} on {date}", "my {species} {pet_name} needs a vet visit on {date}"]},)),
)

# Replies to a request no listed tool can serve.
IRRELEVANT_REPLIES = {
    "en": ["Sorry, none of the available tools can do that.", "I can't help with that using the tools I have.",
           "None of my tools fit that request.", "That is outside what the available functions can do."],
    "zh": ["抱歉，现有的工具做不到这个。", "这个请求没有合适的工具可以处理。", "我目前的工具帮不了这个忙。"],
}

SLOT_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
NAME_STYLES = ("snake", "dotted", "camel")


# ---- synthesizing a catalog ------------------------------------------------------------------

@dataclass
class SynthTool:
    """One tool made from a concept: its OpenAI schema and the hints that phrase requests for it."""
    concept: Concept
    name: str
    schema: dict[str, Any]
    hints: dict[str, Any] = field(default_factory=dict)


def _camel(words: list[str], upper_first: bool = False) -> str:
    text = "".join(w.capitalize() for w in words)
    return text if upper_first else text[:1].lower() + text[1:]


def tool_name(concept: Concept, style: str, rng: random.Random) -> str:
    noun = concept.noun.replace("-", " ").split()
    if style == "dotted":
        words = noun if rng.random() < 0.5 else [concept.verb, *noun]
        return concept.domain + "." + "_".join(words)
    if style == "camel":
        return _camel([concept.verb, *noun])
    return "_".join([concept.verb, *noun])


def synthesize_tool(concept: Concept, style: str, rng: random.Random) -> SynthTool:
    """A random rendition of a concept: name style, which optional parameters exist, descriptions."""
    camel_params = style == "camel" and rng.random() < 0.6
    params = [p for p in concept.params if p.required or rng.random() < 0.65]
    rename = {p.name: (_camel(p.name.split("_")) if camel_params else p.name) for p in params}
    keep_descriptions = rng.random() < 0.8
    properties: dict[str, Any] = {}
    slots: dict[str, Any] = {}
    for p in params:
        schema = dict(p.schema)
        if not keep_descriptions and rng.random() < 0.7:
            schema.pop("description", None)
        properties[rename[p.name]] = schema
        if p.pool:
            slots[rename[p.name]] = {"pool": [list(v) if isinstance(v, tuple) else v for v in p.pool]}
    required = [rename[p.name] for p in params if p.required]
    description = concept.description
    if concept.zh_description and rng.random() < 0.3:
        description += " " + concept.zh_description + "。"
    name = tool_name(concept, style, rng)
    schema = {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required}}}
    templates = []
    for group in concept.templates:
        fixed = {rename[k]: v for k, v in group.get("args", {}).items() if k in rename}
        if len(fixed) != len(group.get("args", {})):
            continue  # its fixed argument was left out of this rendition
        converted: dict[str, Any] = {"args": fixed} if fixed else {}
        for lang in ("en", "zh"):
            # a phrasing may only name parameters this rendition has
            texts = [SLOT_RE.sub(lambda m: "{" + rename[m.group(1)] + "}", t) for t in group.get(lang, [])
                     if all(s in rename for s in SLOT_RE.findall(t))]
            if texts:
                converted[lang] = texts
        if "en" in converted or "zh" in converted:
            templates.append(converted)
    labels = {rename[p.name]: {"en": p.name.replace("_", " "), "zh": p.name.replace("_", " ")} for p in params}
    hints = {"slots": slots, "templates": templates, "labels": labels}
    return SynthTool(concept, name, schema, hints)


def synthesize_catalog(rng: random.Random, size: int, exclude: frozenset[str] = frozenset(),
                       domains: frozenset[str] = frozenset()) -> list[SynthTool]:
    """`size` tools of distinct concepts (none named in `exclude`; only of `domains` if given and
    any is left there), each in a random name style."""
    pool = [c for c in CONCEPTS if c.noun not in exclude]
    pool = [c for c in pool if c.domain in domains] or pool
    concepts = rng.sample(pool, min(size, len(pool)))
    tools: list[SynthTool] = []
    for concept in concepts:
        tool = synthesize_tool(concept, rng.choice(NAME_STYLES), rng)
        if all(t.name != tool.name for t in tools):
            tools.append(tool)
    return tools


# ---- conversations ---------------------------------------------------------------------------

@dataclass
class GeneralistConfig:
    """Shares and sizes of the generalist data."""
    catalog_sizes: dict[int, float] = field(default_factory=lambda: {1: 0.3, 2: 0.3, 3: 0.2, 4: 0.12, 5: 0.08})
    irrelevant_share: float = 0.3
    sibling_share: float = 0.5    # irrelevant requests drawn from a catalog tool's own domain, where one is left
    chat_share: float = 0.05
    lang_weights: dict[str, float] = field(default_factory=lambda: {"en": 0.85, "zh": 0.15})
    generic_share: float = 0.15   # the schema-derived plain phrasings (generic.py) instead of the concept's
    noise_scale: float = 0.5
    max_chars: int = 1800         # rendered with its tools; longer records are dropped


@dataclass
class _Built:
    catalog: Catalog
    ctx: Context
    schemas: list[dict[str, Any]]


_BUILTIN_HINTS: HintSet | None = None


def _builtin_hints() -> HintSet:
    global _BUILTIN_HINTS
    if _BUILTIN_HINTS is None:
        _BUILTIN_HINTS = load_hints(None)
    return _BUILTIN_HINTS


def _build(tools: list[SynthTool], config: GeneralistConfig, rng: random.Random) -> _Built:
    """The generator's machinery for one synthesized catalog: a catalog, plans and a context."""
    schemas = [t.schema for t in tools]
    catalog = parse_catalog(schemas, source="synthesized catalog")  # every synthesized schema must validate
    shared = _builtin_hints()
    # Per-catalog hints over the shared pools and chat lines (no deep copy of the built-in set).
    hints = HintSet(tools={t.name: t.hints for t in tools}, pools=shared.pools, chat=shared.chat,
                    texts=shared.texts, user_tools={t.name for t in tools})
    data_config = DataConfig(lang_weights=dict(config.lang_weights), generic_share=config.generic_share,
                             noise_scale=config.noise_scale)
    plans = build_plans(catalog, hints)
    return _Built(catalog, Context(catalog, plans, hints, data_config, rng), schemas)


def _call_sample(built: _Built) -> dict[str, Any] | None:
    return KINDS["single_call"](built.ctx)


def _irrelevant_sample(built: _Built, tools: list[SynthTool], config: GeneralistConfig,
                       rng: random.Random) -> dict[str, Any] | None:
    """A request phrased for a concept outside the catalog, answered in text without a call.
    Often a sibling of a catalog tool (same domain: a currency conversion where only stock
    quotes are offered), because a near miss is what tempts a model into a wrong call."""
    present = frozenset(t.concept.noun for t in tools)
    siblings = frozenset(t.concept.domain for t in tools) if rng.random() < config.sibling_share else frozenset()
    outsider = synthesize_catalog(rng, 1, exclude=present, domains=siblings)
    if not outsider:
        return None
    request = _call_sample(_build(outsider, config, rng))
    if request is None:
        return None
    lang = "zh" if any("\u4e00" <= c <= "\u9fff" for c in request["messages"][0]["content"]) else "en"
    text = rng.choice(IRRELEVANT_REPLIES[lang])
    return {"kind": "irrelevant", "lang": request["lang"], "tools": [],
            "template": "irrelevant." + request["template"],
            "messages": [user(request["messages"][0]["content"]), say(text)]}


def generate_generalist(n: int, seed: int = 0, config: GeneralistConfig | None = None) -> list[dict[str, Any]]:
    """n conversations, each with its own synthesized catalog in `tool_schemas`; deterministic by seed."""
    if n < 0:
        raise FnedgeError(f"n must be >= 0, got {n}")
    config = config or GeneralistConfig()
    rng = random.Random(f"generalist:{seed}")
    sizes, weights = list(config.catalog_sizes), list(config.catalog_sizes.values())
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    tries = 0
    while len(records) < n and tries < 20 * n + 100:
        tries += 1
        tools = synthesize_catalog(rng, rng.choices(sizes, weights)[0])
        built = _build(tools, config, rng)
        r = rng.random()
        if r < config.irrelevant_share:
            record = _irrelevant_sample(built, tools, config, rng)
        elif r < config.irrelevant_share + config.chat_share:
            record = KINDS["no_call"](built.ctx)
        else:
            record = _call_sample(built)
        if record is None or record_problem(record, built.catalog):
            continue
        record = {**record, "tool_schemas": built.schemas}
        if rendered_chars(record) > config.max_chars:
            continue
        key = exact_key(record)
        if key in seen:
            continue
        seen.add(key)
        records.append(record)
    if len(records) < n:
        raise FnedgeError(f"only {len(records)} of {n} generalist conversations could be made")
    return [{"id": f"generalist-{seed}-{i:07d}", **record} for i, record in enumerate(records)]


def rendered_chars(record: dict[str, Any]) -> int:
    from fnedge.chat_format import render
    return len(render(record["messages"], record.get("tool_schemas")))


def carries_tools(records: list[dict[str, Any]]) -> bool:
    """Whether conversations bring their own tool schemas (generalist data)."""
    return bool(records) and all(record.get("tool_schemas") for record in records)
