SELECT
  `t5`.`customer_id`
FROM (
  SELECT
    `t2`.`customer_id`,
    `t2`.`recency_days`,
    `t2`.`frequency`,
    `t2`.`monetary`,
    `t2`.`rfm_segment`,
    `t2`.`age`,
    `t2`.`age_band`,
    `t2`.`clv`,
    `t2`.`last_order_at`,
    `t4`.`city`,
    `t4`.`postcode`,
    `t4`.`email`
  FROM `profiles` AS `t2`
  LEFT OUTER JOIN (
    SELECT
      `t1`.`customer_id`,
      `t1`.`city`,
      `t1`.`postcode`,
      `t1`.`email`
    FROM `customers` AS `t1`
  ) AS `t4`
    ON `t2`.`customer_id` = `t4`.`customer_id`
) AS `t5`
WHERE
  `t5`.`city` IN ('Lyon', 'Paris')
  AND STARTSWITH(`t5`.`postcode`, '75')
  AND NOT `t5`.`email` IS NULL
