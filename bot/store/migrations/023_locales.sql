-- The member's Discord locale, taken from the /animate interaction at admission: a card
-- redrawn later by delivery, and the result message, speak their language. NULL: English.
ALTER TABLE jobs ADD COLUMN locale TEXT;
