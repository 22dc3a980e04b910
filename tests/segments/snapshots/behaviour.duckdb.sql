SELECT
  "t11"."customer_id"
FROM (
  SELECT
    "t4"."customer_id",
    "t4"."recency_days",
    "t4"."frequency",
    "t4"."monetary",
    "t4"."rfm_segment",
    "t4"."age",
    "t4"."age_band",
    "t4"."clv_12m",
    "t4"."last_order_at",
    COALESCE("t9"."_b0", FALSE) AS "_b0",
    COALESCE("t10"."_b1", 0) AS "_b1"
  FROM (
    SELECT
      "t0"."customer_id",
      "t0"."recency_days",
      "t0"."frequency",
      "t0"."monetary",
      "t0"."rfm_segment",
      "t0"."age",
      "t0"."age_band",
      "t0"."clv_12m",
      "t0"."last_order_at"
    FROM "profiles" AS "t0"
  ) AS "t4"
  LEFT OUTER JOIN (
    SELECT
      "t5"."customer_id",
      TRUE AS "_b0"
    FROM (
      SELECT DISTINCT
        "t1"."customer_id"
      FROM "transactions" AS "t1"
      WHERE
        "t1"."category" = 'running'
        AND "t1"."ordered_at" < MAKE_TIMESTAMPTZ(2024, 7, 1, 0, 0, 0.0, 'UTC')
        AND "t1"."ordered_at" >= MAKE_TIMESTAMPTZ(2024, 4, 2, 0, 0, 0.0, 'UTC')
    ) AS "t5"
  ) AS "t9"
    ON "t4"."customer_id" = "t9"."customer_id"
  LEFT OUTER JOIN (
    SELECT
      "t6"."customer_id",
      COUNT(*) AS "_b1"
    FROM (
      SELECT
        *
      FROM "events" AS "t2"
      WHERE
        "t2"."event_type" = 'email_click'
        AND "t2"."occurred_at" < MAKE_TIMESTAMPTZ(2024, 7, 1, 0, 0, 0.0, 'UTC')
        AND "t2"."occurred_at" >= MAKE_TIMESTAMPTZ(2024, 6, 1, 0, 0, 0.0, 'UTC')
    ) AS "t6"
    GROUP BY
      1
  ) AS "t10"
    ON "t4"."customer_id" = "t10"."customer_id"
) AS "t11"
WHERE
  "t11"."_b0" AND "t11"."_b1" >= 2
