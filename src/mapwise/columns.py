"""Canonical table and column names: the one place they are spelled."""

# tables
CUSTOMERS = "customers"
ITEMS = "items"
EVENTS = "events"
CAMPAIGN_EXPOSURES = "campaign_exposures"
SESSIONS = "sessions"
CUSTOMER_TRAITS = "customer_traits"

# keys and ids
ITEM_IDX = "item_idx"  # an item's dense index in a model's catalogue (0 is padding)
CUSTOMER_ID = "customer_id"
ITEM_ID = "item_id"
EVENT_ID = "event_id"
EXPOSURE_ID = "exposure_id"
SESSION_ID = "session_id"
RECORD_ID = "record_id"
CAMPAIGN_ID = "campaign_id"

# shared
SOURCE = "source"
TIMESTAMP = "timestamp"
CHANNEL = "channel"

# customers
COUNTRY = "country"
REGION = "region"
AGE = "age"
AGE_BAND = "age_band"
GENDER = "gender"
SIGNUP_DATE = "signup_date"
CONSENT_EMAIL = "consent_email"
CONSENT_SMS = "consent_sms"
CONSENT_PHONE = "consent_phone"

# items
TITLE = "title"
CATEGORY = "category"
PRICE = "price"

# events
EVENT_TYPE = "event_type"
QUANTITY = "quantity"
VALUE = "value"

# campaign exposures
ARM = "arm"
TREATED = "treated"
VISIT = "visit"
CONVERSION = "conversion"
SPEND = "spend"

# customer traits (typed columns the mappings declare, beside these)
OBSERVED_AT = "observed_at"

# sessions
MONTH = "month"
WEEKEND = "weekend"
VISITOR_TYPE = "visitor_type"
ADMIN_PAGES = "admin_pages"
ADMIN_DURATION = "admin_duration"
INFO_PAGES = "info_pages"
INFO_DURATION = "info_duration"
PRODUCT_PAGES = "product_pages"
PRODUCT_DURATION = "product_duration"
BOUNCE_RATE = "bounce_rate"
EXIT_RATE = "exit_rate"
PAGE_VALUE = "page_value"
SPECIAL_DAY = "special_day"
TRAFFIC_TYPE = "traffic_type"
BROWSER = "browser"
OPERATING_SYSTEM = "operating_system"
PURCHASED = "purchased"

# vocabularies
EVENT_TYPES = ("view", "add_to_cart", "remove_from_cart", "purchase", "return")
GENDERS = ("female", "male", "other", "unknown")
AGE_BANDS = ("<18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")
VISITOR_TYPES = ("new", "returning", "other")

# quarantine (one row per rejected source row and table)
Q_FILE = "file"
Q_LINE = "line"
Q_COLUMN = "column"
Q_REASON = "reason"
Q_VALUE = "value"

# event types the profiles read
PURCHASE = "purchase"
RETURN = "return"

# profiles (one row per customer as of a cutoff)
PROFILES = "profiles"
AS_OF = "as_of"
RECENCY_DAYS = "recency_days"
FREQUENCY = "frequency"
MONETARY = "monetary"
TENURE_DAYS = "tenure_days"
AVG_BASKET_VALUE = "avg_basket_value"
DISTINCT_ITEMS = "distinct_items"
PURCHASES = "purchases"
RETURNS = "returns"
RETURN_RATE = "return_rate"
TOP_CATEGORY = "top_category"
INTERESTS = "interests"
PREFERRED_CHANNEL = "preferred_channel"
RECENT_ITEMS = "recent_items"
R_SCORE = "r_score"
F_SCORE = "f_score"
M_SCORE = "m_score"
SEGMENT = "segment"
SEGMENTS = (
    "champions", "loyal", "potential_loyalists", "new", "promising",
    "need_attention", "at_risk", "cant_lose", "hibernating", "lost",
)
