SELECT
  "t5"."customer_id"
FROM (
  SELECT
    "t2"."customer_id",
    "t2"."recency_days",
    "t2"."frequency",
    "t2"."monetary",
    "t2"."rfm_segment",
    "t2"."age",
    "t2"."age_band",
    "t2"."clv",
    "t2"."last_order_at",
    "t4"."lat",
    "t4"."lon"
  FROM "profiles" AS "t2"
  LEFT OUTER JOIN (
    SELECT
      "t1"."customer_id",
      "t1"."lat",
      "t1"."lon"
    FROM "customers" AS "t1"
  ) AS "t4"
    ON "t2"."customer_id" = "t4"."customer_id"
) AS "t5"
WHERE
  (
    "t5"."lat" BETWEEN 45.718584321631916 AND 45.80941567836809
    AND "t5"."lon" BETWEEN 4.770598681406249 AND 4.900801318593751
    AND (
      CASE
        WHEN (
          "t5"."lat" IS NULL
        ) OR (
          "t5"."lon" IS NULL
        )
        THEN CAST(NULL AS DOUBLE)
        ELSE ASIN(
          LEAST(
            SQRT(
              (
                POWER(SIN(RADIANS(45.764 - "t5"."lat") / 2), 2)
              ) + (
                COS(RADIANS("t5"."lat")) * COS(RADIANS(45.764)) * (
                  POWER(SIN(RADIANS(4.8357 - "t5"."lon") / 2), 2)
                )
              )
            ),
            1.0
          )
        ) * 12742.0176
      END <= 5
    )
  )
  OR (
    "t5"."lat" BETWEEN 48.82275059297915 AND 48.877249407020855
    AND "t5"."lon" BETWEEN 2.3085895771822935 AND 2.3914104228177067
    AND (
      CASE
        WHEN (
          "t5"."lat" IS NULL
        ) OR (
          "t5"."lon" IS NULL
        )
        THEN CAST(NULL AS DOUBLE)
        ELSE ASIN(
          LEAST(
            SQRT(
              (
                POWER(SIN(RADIANS(48.85 - "t5"."lat") / 2), 2)
              ) + (
                COS(RADIANS("t5"."lat")) * COS(RADIANS(48.85)) * (
                  POWER(SIN(RADIANS(2.35 - "t5"."lon") / 2), 2)
                )
              )
            ),
            1.0
          )
        ) * 12742.0176
      END <= 3
    )
  )
