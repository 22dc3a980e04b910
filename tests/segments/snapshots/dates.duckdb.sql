SELECT
  "t0"."customer_id"
FROM "profiles" AS "t0"
WHERE
  DATE_DIFF('DAY', CAST("t0"."last_order_at" AS DATE), MAKE_DATE(2024, 7, 1)) > 90
  AND CAST("t0"."last_order_at" AS DATE) >= MAKE_DATE(2023, 1, 1)
