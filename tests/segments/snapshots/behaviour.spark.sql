SELECT
  `t10`.`customer_id`
FROM (
  SELECT
    `t3`.`customer_id`,
    `t3`.`as_of`,
    `t3`.`recency_days`,
    `t3`.`frequency`,
    `t3`.`monetary`,
    `t3`.`rfm_segment`,
    `t3`.`age`,
    `t3`.`age_band`,
    `t3`.`clv`,
    `t3`.`last_order_at`,
    COALESCE(`t8`.`_b0`, FALSE) AS `_b0`,
    COALESCE(`t9`.`_b1`, 0) AS `_b1`
  FROM `profiles` AS `t3`
  LEFT OUTER JOIN (
    SELECT
      `t4`.`customer_id`,
      TRUE AS `_b0`
    FROM (
      SELECT DISTINCT
        `t1`.`customer_id`
      FROM `transactions` AS `t1`
      WHERE
        `t1`.`category` = 'running'
        AND `t1`.`ordered_at` < CAST('2024-07-01T00:00:00+00:00' AS TIMESTAMP)
        AND `t1`.`ordered_at` >= CAST('2024-04-02T00:00:00+00:00' AS TIMESTAMP)
    ) AS `t4`
  ) AS `t8`
    ON `t3`.`customer_id` = `t8`.`customer_id`
  LEFT OUTER JOIN (
    SELECT
      `t5`.`customer_id`,
      COUNT(*) AS `_b1`
    FROM (
      SELECT
        *
      FROM `events` AS `t2`
      WHERE
        `t2`.`event_type` = 'email_click'
        AND `t2`.`occurred_at` < CAST('2024-07-01T00:00:00+00:00' AS TIMESTAMP)
        AND `t2`.`occurred_at` >= CAST('2024-06-01T00:00:00+00:00' AS TIMESTAMP)
    ) AS `t5`
    GROUP BY
      1
  ) AS `t9`
    ON `t3`.`customer_id` = `t9`.`customer_id`
) AS `t10`
WHERE
  `t10`.`_b0` AND `t10`.`_b1` >= 2
