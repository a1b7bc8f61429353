-- The category of each template a tenant's apps use, as the platform has it: learned from the
-- template calls the drop-in relays (listing, creating) and kept current by the platform's
-- template_category_update webhooks. A message through the drop-in names its template only, and
-- without a category given it was taken for marketing (the safe guess for the limits): a one-time
-- code then queued behind marketing, under the marketing frequency cap and its pauses. Now it is
-- what the platform will bill and count it as.
CREATE TABLE template_categories (
    tenant_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    language   TEXT NOT NULL,
    category   TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, name, language)
);
